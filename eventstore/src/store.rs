//! Appending to and reading from the log.
//!
//! Every function takes a `&mut PgConnection` so callers choose the
//! transaction: a command handler appends its events and records its
//! idempotency key in one transaction.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::envelope::{EventEnvelope, Metadata, NewEvent};

/// Which stream version an append expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the current version is.
    Any,
    /// The stream must be at exactly this version; `Exact(0)` means it must not exist yet.
    Exact(i64),
}

/// What an append wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    /// The stream's version after the append.
    pub stream_version: i64,
    /// Global position of the last appended event.
    pub last_position: i64,
    /// The recorded events, in stream order.
    pub events: Vec<EventEnvelope>,
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer got there first: the stream is not at the expected version.
    #[error("stream {stream_id} is at version {actual}, expected {expected:?}")]
    Conflict {
        /// The stream.
        stream_id: Uuid,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// What the stream is at (0 if it does not exist).
        actual: i64,
    },
    /// The stream exists with another type.
    #[error("stream {stream_id} has type {actual}, not {requested}")]
    WrongStreamType {
        /// The stream.
        stream_id: Uuid,
        /// The type asked for.
        requested: String,
        /// The stream's type.
        actual: String,
    },
    /// Nothing to append.
    #[error("an append needs at least one event")]
    Empty,
    /// The database failed.
    #[error("appending to stream {stream_id}: {source}")]
    Database {
        /// The stream.
        stream_id: Uuid,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
}

/// Channel notified (at commit) whenever events are appended.
pub const OUTBOX_CHANNEL: &str = "eventstore_outbox";

pub(crate) const ENVELOPE_COLUMNS: &str =
    "event_id, stream_id, stream_type, stream_version, global_position, \
     event_type, schema_version, recorded_at, payload, metadata";

/// Appends `events` to a stream and enqueues them in the outbox, inside the
/// caller's transaction, in one statement (the stream's version moved under
/// its row lock, the events and outbox rows inserted, the relay notified at
/// commit). Versions continue densely from the current one; if the stream is
/// not at `expected`, no event is written and `Conflict` is returned.
#[tracing::instrument(skip(conn, events, metadata), fields(count = events.len()))]
pub async fn append(
    conn: &mut PgConnection,
    stream_type: &str,
    stream_id: Uuid,
    expected: ExpectedVersion,
    events: &[NewEvent],
    metadata: &Metadata,
) -> Result<Appended, AppendError> {
    if events.is_empty() {
        return Err(AppendError::Empty);
    }
    let db = |source| AppendError::Database { stream_id, source };
    let count = i64::try_from(events.len()).expect("event count fits in i64");
    // `advanced` yields the stream's new version and type, or no row when the
    // stream is not at the expected version.
    let advance = match expected {
        ExpectedVersion::Any => {
            "INSERT INTO eventstore.streams (stream_id, stream_type, version) VALUES ($2, $3, $4)
             ON CONFLICT (stream_id) DO UPDATE SET version = streams.version + EXCLUDED.version
             RETURNING version, stream_type"
        }
        ExpectedVersion::Exact(0) => {
            "INSERT INTO eventstore.streams (stream_id, stream_type, version) VALUES ($2, $3, $4)
             ON CONFLICT (stream_id) DO NOTHING
             RETURNING version, stream_type"
        }
        ExpectedVersion::Exact(_) => {
            "UPDATE eventstore.streams SET version = version + $4
             WHERE stream_id = $2 AND version = $5
             RETURNING version, stream_type"
        }
    };
    let expected_version = match expected {
        ExpectedVersion::Exact(version) => version,
        // Checked in SQL only when not negative (`Any`).
        ExpectedVersion::Any => -1,
    };
    let event_ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let schema_versions: Vec<i32> = events.iter().map(|e| e.schema_version).collect();
    let payloads: Vec<&serde_json::Value> = events.iter().map(|e| &e.payload).collect();
    let metadata = serde_json::to_value(metadata).expect("metadata serializes");

    let sql = format!(
        "WITH advanced AS ({advance}),
         inserted AS (
             INSERT INTO eventstore.events
                 (event_id, stream_id, stream_type, stream_version, event_type, schema_version, payload, metadata)
             SELECT e.event_id, $2, $3, a.version - $4 + e.ord, e.event_type, e.schema_version, e.payload, $9
             FROM advanced a,
                  UNNEST($1::uuid[], $6::text[], $7::int[], $8::jsonb[])
                      WITH ORDINALITY AS e(event_id, event_type, schema_version, payload, ord)
             WHERE a.stream_type = $3 AND ($5::bigint < 0 OR a.version - $4 = $5)
             RETURNING {ENVELOPE_COLUMNS}
         ), enqueued AS (
             INSERT INTO eventstore.outbox (global_position) SELECT global_position FROM inserted
         ), notified AS (
             SELECT pg_notify($10, '') FROM advanced
         )
         SELECT {ENVELOPE_COLUMNS} FROM inserted, (SELECT count(*) FROM notified) AS n
         ORDER BY stream_version"
    );
    let recorded: Vec<EventEnvelope> = sqlx::query_as(&sql)
        .bind(&event_ids)
        .bind(stream_id)
        .bind(stream_type)
        .bind(count)
        .bind(expected_version)
        .bind(&types)
        .bind(&schema_versions)
        .bind(&payloads)
        .bind(&metadata)
        .bind(OUTBOX_CHANNEL)
        .fetch_all(&mut *conn)
        .await
        .map_err(|source| {
            if platform::db::is_unique_violation(&source, Some("events_stream_version_unique")) {
                crate::metrics::record_conflict(stream_type);
                AppendError::Conflict {
                    stream_id,
                    expected,
                    actual: expected_version + count,
                }
            } else {
                db(source)
            }
        })?;
    let Some(last) = recorded.last() else {
        let refused = refusal(conn, stream_type, stream_id, expected).await;
        if matches!(refused, AppendError::Conflict { .. }) {
            crate::metrics::record_conflict(stream_type);
        }
        return Err(refused);
    };
    crate::metrics::record_appended(stream_type, recorded.len());
    Ok(Appended {
        stream_version: last.stream_version,
        last_position: recorded
            .iter()
            .map(|e| e.global_position)
            .max()
            .unwrap_or(0),
        events: recorded,
    })
}

/// Why an append wrote nothing: the stream has another type, or is not at
/// the expected version.
async fn refusal(
    conn: &mut PgConnection,
    stream_type: &str,
    stream_id: Uuid,
    expected: ExpectedVersion,
) -> AppendError {
    let found: Result<Option<(i64, String)>, sqlx::Error> =
        sqlx::query_as("SELECT version, stream_type FROM eventstore.streams WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_optional(&mut *conn)
            .await;
    match found {
        Err(source) => AppendError::Database { stream_id, source },
        Ok(Some((_, actual_type))) if actual_type != stream_type => AppendError::WrongStreamType {
            stream_id,
            requested: stream_type.to_owned(),
            actual: actual_type,
        },
        Ok(found) => AppendError::Conflict {
            stream_id,
            expected,
            actual: found.map_or(0, |(version, _)| version),
        },
    }
}

/// Takes the version rows of `stream_ids` (those that exist) until the
/// transaction ends, in id order so that writers locking overlapping sets
/// queue instead of deadlocking. While they are held no other transaction
/// can append to these streams: the version row is the append lock.
pub async fn lock_streams(conn: &mut PgConnection, stream_ids: &[Uuid]) -> Result<(), sqlx::Error> {
    if stream_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "SELECT stream_id FROM eventstore.streams WHERE stream_id = ANY($1)
         ORDER BY stream_id FOR UPDATE",
    )
    .bind(stream_ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// The current version of a stream, or `None` if it has no events.
pub async fn stream_version(
    conn: &mut PgConnection,
    stream_id: Uuid,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM eventstore.streams WHERE stream_id = $1")
        .bind(stream_id)
        .fetch_optional(conn)
        .await
}

/// The events of a stream with version above `after_version`, in order.
#[tracing::instrument(skip(conn))]
pub async fn read_stream(
    conn: &mut PgConnection,
    stream_id: Uuid,
    after_version: i64,
) -> Result<Vec<EventEnvelope>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ENVELOPE_COLUMNS} FROM eventstore.events
         WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version"
    ))
    .bind(stream_id)
    .bind(after_version)
    .fetch_all(conn)
    .await
}

/// Up to `limit` events with a global position above `after_position`, in
/// log order, optionally only of the given stream types. Used by replay.
pub async fn read_all_after(
    conn: &mut PgConnection,
    after_position: i64,
    limit: i64,
    stream_types: Option<&[String]>,
) -> Result<Vec<EventEnvelope>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ENVELOPE_COLUMNS} FROM eventstore.events
         WHERE global_position > $1 AND ($3::text[] IS NULL OR stream_type = ANY($3))
         ORDER BY global_position LIMIT $2"
    ))
    .bind(after_position)
    .bind(limit)
    .bind(stream_types)
    .fetch_all(conn)
    .await
}
