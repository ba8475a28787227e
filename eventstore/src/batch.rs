//! Appending to many streams in one statement: the write half of group commit.
//!
//! Each stream of a batch either advances (its events and outbox rows are
//! inserted) or is reported as a conflict with nothing written for it; the
//! other streams are unaffected. So one stale command in a batch fails
//! alone, without aborting the transaction the others commit in.

use std::collections::{HashMap, HashSet};

use sqlx::PgConnection;
use uuid::Uuid;

use crate::envelope::{EventEnvelope, Metadata, NewEvent};
use crate::store::{AppendError, Appended, ENVELOPE_COLUMNS, OUTBOX_CHANNEL};

/// The events one stream gets in a batch, expected at a version.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    /// The stream's type.
    pub stream_type: &'static str,
    /// The stream.
    pub stream_id: Uuid,
    /// The version the stream must be at (0: it must not exist yet).
    pub expected_version: i64,
    /// The events, in order, each with the metadata of the command that
    /// produced it (commands on one stream in one batch share its append).
    pub events: Vec<(NewEvent, Metadata)>,
}

/// What happened to one stream of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamOutcome {
    /// The events were written.
    Appended(Appended),
    /// The stream was not at the expected version (or has another type):
    /// nothing was written for it.
    Conflict {
        /// The stream's version (0: it does not exist).
        actual: i64,
    },
}

/// Appends every stream of `batch` in one statement inside the caller's
/// transaction, and returns one outcome per stream, in `batch` order.
/// Streams must be distinct and each must have at least one event.
#[tracing::instrument(skip_all, fields(streams = batch.len()))]
pub async fn append_batch(
    conn: &mut PgConnection,
    batch: &[StreamAppend],
) -> Result<Vec<StreamOutcome>, AppendError> {
    let mut seen = HashSet::with_capacity(batch.len());
    for stream in batch {
        if stream.events.is_empty() {
            return Err(AppendError::Empty);
        }
        assert!(
            seen.insert(stream.stream_id),
            "stream {} appears twice in one batch",
            stream.stream_id
        );
    }
    let Some(first) = batch.first() else {
        return Ok(Vec::new());
    };

    let mut stream_ids = Vec::with_capacity(batch.len());
    let mut stream_types = Vec::with_capacity(batch.len());
    let mut expected = Vec::with_capacity(batch.len());
    let mut counts = Vec::with_capacity(batch.len());
    let mut event_ids = Vec::new();
    let mut event_streams = Vec::new();
    let mut event_offsets: Vec<i64> = Vec::new();
    let mut event_types = Vec::new();
    let mut schema_versions = Vec::new();
    let mut payloads = Vec::new();
    let mut metadata = Vec::new();
    for stream in batch {
        stream_ids.push(stream.stream_id);
        stream_types.push(stream.stream_type);
        expected.push(stream.expected_version);
        counts.push(i64::try_from(stream.events.len()).expect("event count fits in i64"));
        for (offset, (event, meta)) in (1_i64..).zip(&stream.events) {
            event_ids.push(event.event_id);
            event_streams.push(stream.stream_id);
            event_offsets.push(offset);
            event_types.push(event.event_type.as_str());
            schema_versions.push(event.schema_version);
            payloads.push(&event.payload);
            metadata.push(serde_json::to_value(meta).expect("metadata serializes"));
        }
    }

    // `created` and `updated` touch disjoint rows (new and existing streams);
    // a stream in neither did not advance and gets no events.
    let sql = format!(
        "WITH req AS (
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::bigint[])
                 AS r(stream_id, stream_type, expected, count)
         ), created AS (
             INSERT INTO eventstore.streams (stream_id, stream_type, version)
             SELECT stream_id, stream_type, count FROM req WHERE expected = 0
             ORDER BY stream_id
             ON CONFLICT (stream_id) DO NOTHING
             RETURNING stream_id
         ), updated AS (
             UPDATE eventstore.streams s SET version = s.version + r.count
             FROM req r
             WHERE s.stream_id = r.stream_id AND r.expected > 0
               AND s.version = r.expected AND s.stream_type = r.stream_type
             RETURNING s.stream_id
         ), advanced AS (
             SELECT stream_id FROM created UNION ALL SELECT stream_id FROM updated
         ), inserted AS (
             INSERT INTO eventstore.events
                 (event_id, stream_id, stream_type, stream_version, event_type, schema_version, payload, metadata)
             SELECT e.event_id, e.stream_id, r.stream_type, r.expected + e.offset_in_stream,
                    e.event_type, e.schema_version, e.payload, e.metadata
             FROM UNNEST($5::uuid[], $6::uuid[], $7::bigint[], $8::text[], $9::int[], $10::jsonb[], $11::jsonb[])
                      WITH ORDINALITY
                      AS e(event_id, stream_id, offset_in_stream, event_type, schema_version, payload, metadata, ord)
                  JOIN req r ON r.stream_id = e.stream_id
             WHERE e.stream_id IN (SELECT stream_id FROM advanced)
             ORDER BY e.ord
             RETURNING {ENVELOPE_COLUMNS}
         ), enqueued AS (
             INSERT INTO eventstore.outbox (global_position) SELECT global_position FROM inserted
         ), notified AS (
             SELECT pg_notify($12, '') WHERE EXISTS (SELECT 1 FROM advanced)
         )
         SELECT {ENVELOPE_COLUMNS} FROM inserted, (SELECT count(*) FROM notified) AS n"
    );
    let recorded: Vec<EventEnvelope> = sqlx::query_as(&sql)
        .bind(&stream_ids)
        .bind(&stream_types)
        .bind(&expected)
        .bind(&counts)
        .bind(&event_ids)
        .bind(&event_streams)
        .bind(&event_offsets)
        .bind(&event_types)
        .bind(&schema_versions)
        .bind(&payloads)
        .bind(&metadata)
        .bind(OUTBOX_CHANNEL)
        .fetch_all(&mut *conn)
        .await
        .map_err(|source| AppendError::Database {
            stream_id: first.stream_id,
            source,
        })?;

    let mut by_stream: HashMap<Uuid, Vec<EventEnvelope>> = HashMap::new();
    for event in recorded {
        by_stream.entry(event.stream_id).or_default().push(event);
    }
    let conflicted: Vec<Uuid> = stream_ids
        .iter()
        .filter(|id| !by_stream.contains_key(id))
        .copied()
        .collect();
    let actual: HashMap<Uuid, i64> = if conflicted.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as(
            "SELECT stream_id, version FROM eventstore.streams WHERE stream_id = ANY($1)",
        )
        .bind(&conflicted)
        .fetch_all(&mut *conn)
        .await
        .map_err(|source| AppendError::Database {
            stream_id: conflicted[0],
            source,
        })?
        .into_iter()
        .collect()
    };
    Ok(batch
        .iter()
        .map(|stream| match by_stream.remove(&stream.stream_id) {
            Some(mut events) => {
                crate::metrics::record_appended(stream.stream_type, events.len());
                events.sort_by_key(|e| e.stream_version);
                StreamOutcome::Appended(Appended {
                    stream_version: events.last().map_or(0, |e| e.stream_version),
                    last_position: events.iter().map(|e| e.global_position).max().unwrap_or(0),
                    events,
                })
            }
            None => {
                crate::metrics::record_conflict(stream.stream_type);
                StreamOutcome::Conflict {
                    actual: actual.get(&stream.stream_id).copied().unwrap_or(0),
                }
            }
        })
        .collect())
}
