//! Everything the audit reads from PostgreSQL, in one snapshot: the event
//! log, the read models, the gateway's ledger and the idempotency records.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use payment_gateway::ledger::Charge;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::read_models::ReadRows;
use crate::report::{AuditReport, Check};

/// One event of the log, its payload parsed.
#[derive(Debug, Clone)]
pub struct LogEvent {
    /// Unique id.
    pub event_id: Uuid,
    /// Its stream.
    pub stream_id: Uuid,
    /// Its stream's type.
    pub stream_type: String,
    /// Its version in the stream.
    pub stream_version: i64,
    /// Its position in the log.
    pub global_position: i64,
    /// Its type name.
    pub event_type: String,
    /// Version of the payload's schema.
    pub schema_version: i32,
    /// When the log recorded it.
    pub recorded_at: DateTime<Utc>,
    /// The payload (`Null` if its text did not parse, which the log check reports).
    pub payload: serde_json::Value,
}

/// A row of `eventstore.streams`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StreamRow {
    /// The stream.
    pub stream_id: Uuid,
    /// Its type.
    pub stream_type: String,
    /// The version it claims to be at.
    pub version: i64,
}

/// The event log, indexed by event and by stream.
#[derive(Debug, Default)]
pub struct Log {
    /// Every event, in log order.
    pub events: Vec<LogEvent>,
    /// The rows of `eventstore.streams`.
    pub stream_rows: Vec<StreamRow>,
    /// Outbox rows not yet relayed.
    pub outbox: i64,
    by_id: HashMap<Uuid, usize>,
    by_stream: BTreeMap<Uuid, Vec<usize>>,
}

impl Log {
    /// Builds the indexes over `events` (in log order).
    pub fn new(events: Vec<LogEvent>, stream_rows: Vec<StreamRow>, outbox: i64) -> Self {
        let mut by_id = HashMap::with_capacity(events.len());
        let mut by_stream: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
        for (index, event) in events.iter().enumerate() {
            by_id.insert(event.event_id, index);
            by_stream.entry(event.stream_id).or_default().push(index);
        }
        for indexes in by_stream.values_mut() {
            indexes.sort_by_key(|&i| events[i].stream_version);
        }
        Self {
            events,
            stream_rows,
            outbox,
            by_id,
            by_stream,
        }
    }

    /// The event `event_id`, if logged.
    pub fn event(&self, event_id: Uuid) -> Option<&LogEvent> {
        self.by_id.get(&event_id).map(|&i| &self.events[i])
    }

    /// Every stream with its events in version order.
    pub fn streams(&self) -> impl Iterator<Item = (Uuid, Vec<&LogEvent>)> + '_ {
        self.by_stream
            .iter()
            .map(|(id, indexes)| (*id, indexes.iter().map(|&i| &self.events[i]).collect()))
    }

    /// Checks the log itself: versions dense from 1, one type per stream,
    /// `eventstore.streams` agreeing; prints what the log holds.
    pub fn check(&self, report: &mut AuditReport) {
        let rows: HashMap<Uuid, &StreamRow> =
            self.stream_rows.iter().map(|r| (r.stream_id, r)).collect();
        let mut per_type: BTreeMap<&str, usize> = BTreeMap::new();
        for (stream_id, events) in self.streams() {
            let stream_type = events[0].stream_type.as_str();
            *per_type.entry(stream_type).or_default() += events.len();
            for (expected, event) in (1_i64..).zip(&events) {
                if event.stream_version != expected {
                    report.violation(
                        Check::Log,
                        "gap",
                        format!(
                            "stream {stream_id}: version {} where {expected} was due",
                            event.stream_version
                        ),
                    );
                    break;
                }
            }
            if let Some(other) = events.iter().find(|e| e.stream_type != stream_type) {
                report.violation(
                    Check::Log,
                    "mixed-types",
                    format!(
                        "stream {stream_id} has events of types {stream_type} and {}",
                        other.stream_type
                    ),
                );
            }
            let last = events.last().map_or(0, |e| e.stream_version);
            match rows.get(&stream_id) {
                Some(row) if row.version == last && row.stream_type == stream_type => {}
                Some(row) => report.violation(
                    Check::Log,
                    "stream-row",
                    format!(
                        "stream {stream_id}: eventstore.streams says {} v{}, the log {stream_type} v{last}",
                        row.stream_type, row.version
                    ),
                ),
                None => report.violation(
                    Check::Log,
                    "stream-row",
                    format!("stream {stream_id} has events but no eventstore.streams row"),
                ),
            }
        }
        for row in &self.stream_rows {
            if row.version > 0 && !self.by_stream.contains_key(&row.stream_id) {
                report.violation(
                    Check::Log,
                    "stream-row",
                    format!(
                        "stream {} is at v{} in eventstore.streams but has no events",
                        row.stream_id, row.version
                    ),
                );
            }
        }
        let types: Vec<String> = per_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
        let last = self.events.last().map_or(0, |e| e.global_position);
        report.line(
            Check::Log,
            format!(
                "log: {} events ({}) in {} streams, last position {last}, outbox {} rows",
                self.events.len(),
                types.join(", "),
                self.by_stream.len(),
                self.outbox
            ),
        );
    }
}

/// A record of `command.idempotency_keys`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct IdempotencyRecord {
    /// The key.
    pub idempotency_key: String,
    /// The status answered.
    pub response_status: i16,
    /// The body answered.
    pub response_body: serde_json::Value,
}

/// What the saga and projector still hold (printed, not checked: what they
/// failed to do shows in the other checks).
#[derive(Debug, Clone, Copy, Default)]
pub struct Bookkeeping {
    /// Sagas with a provider call or deadline pending.
    pub sagas_pending: i64,
    /// Parked saga dead letters.
    pub saga_letters: i64,
    /// Parked projector dead letters.
    pub projector_letters: i64,
}

/// Everything read from the database, in one snapshot.
#[derive(Debug)]
pub struct Snapshot {
    /// The event log.
    pub log: Log,
    /// The read models' rows.
    pub read: ReadRows,
    /// The gateway's ledger.
    pub charges: Vec<Charge>,
    /// The idempotency records of the answered keys that still exist.
    pub idempotency: HashMap<String, IdempotencyRecord>,
    /// What the saga and projector still hold.
    pub bookkeeping: Bookkeeping,
}

impl Snapshot {
    /// Starts the read-only repeatable-read transaction and takes its
    /// snapshot; returns it with the stream types of the log (and the
    /// system's three in any case), so Kafka can be read meanwhile.
    pub async fn begin(
        pool: &PgPool,
    ) -> anyhow::Result<(Transaction<'static, Postgres>, Vec<String>)> {
        let mut tx = pool.begin().await.context("connecting")?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .context("starting the snapshot")?;
        let logged: Vec<String> = sqlx::query_scalar(
            "SELECT stream_type FROM eventstore.events
             UNION SELECT stream_type FROM eventstore.streams",
        )
        .fetch_all(&mut *tx)
        .await
        .context("listing stream types")?;
        let mut types: Vec<String> = platform::kafka::STREAM_TYPES
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        types.extend(
            logged
                .into_iter()
                .filter(|t| !platform::kafka::STREAM_TYPES.contains(&t.as_str())),
        );
        Ok((tx, types))
    }

    /// Reads everything in the transaction [`Self::begin`] started, each
    /// table with one query.
    pub async fn read(
        mut tx: Transaction<'static, Postgres>,
        stream_types: &[String],
        answer_keys: &[String],
    ) -> anyhow::Result<Self> {
        let log = read_log(&mut tx, stream_types).await?;
        let read = ReadRows::read(&mut tx)
            .await
            .context("reading read models")?;
        let charges = sqlx::query_as(
            "SELECT charge_id, idempotency_key, request_hash, reference, amount_cents, currency,
                    token, status, decline_code, created_at, refunded_at, refund_id
             FROM gateway.charges ORDER BY created_at, charge_id",
        )
        .fetch_all(&mut *tx)
        .await
        .context("reading gateway.charges")?;
        let records: Vec<IdempotencyRecord> = sqlx::query_as(
            "SELECT idempotency_key, response_status, response_body
             FROM command.idempotency_keys WHERE idempotency_key = ANY($1)",
        )
        .bind(answer_keys)
        .fetch_all(&mut *tx)
        .await
        .context("reading command.idempotency_keys")?;
        let bookkeeping = read_bookkeeping(&mut tx).await?;
        tx.commit().await.context("ending the snapshot")?;
        Ok(Self {
            log,
            read,
            charges,
            idempotency: records
                .into_iter()
                .map(|r| (r.idempotency_key.clone(), r))
                .collect(),
            bookkeeping,
        })
    }
}

async fn read_log(conn: &mut PgConnection, types: &[String]) -> anyhow::Result<Log> {
    let stream_rows: Vec<StreamRow> =
        sqlx::query_as("SELECT stream_id, stream_type, version FROM eventstore.streams")
            .fetch_all(&mut *conn)
            .await
            .context("reading eventstore.streams")?;
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.outbox")
        .fetch_one(&mut *conn)
        .await
        .context("counting the outbox")?;
    let types = types.to_vec();
    let mut events = Vec::new();
    let mut scan = eventstore::scan::scan(conn, &types);
    while let Some(scanned) = scan.try_next().await.context("scanning the log")? {
        events.push(LogEvent {
            payload: serde_json::from_str(&scanned.payload).unwrap_or(serde_json::Value::Null),
            event_id: scanned.event_id,
            stream_id: scanned.stream_id,
            stream_type: scanned.stream_type,
            stream_version: scanned.stream_version,
            global_position: scanned.global_position,
            event_type: scanned.event_type,
            schema_version: scanned.schema_version,
            recorded_at: scanned.recorded_at,
        });
    }
    drop(scan);
    Ok(Log::new(events, stream_rows, outbox))
}

async fn read_bookkeeping(conn: &mut PgConnection) -> anyhow::Result<Bookkeeping> {
    let (sagas_pending, saga_letters, projector_letters): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM saga.order_sagas WHERE next_action_at IS NOT NULL),
                (SELECT count(*) FROM saga.dead_letters WHERE status = 'parked'),
                (SELECT count(*) FROM projector.dead_letters WHERE status = 'parked')",
    )
    .fetch_one(conn)
    .await
    .context("reading the saga's and projector's bookkeeping")?;
    Ok(Bookkeeping {
        sagas_pending,
        saga_letters,
        projector_letters,
    })
}
