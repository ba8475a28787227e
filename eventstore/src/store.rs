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

const ENVELOPE_COLUMNS: &str =
    "event_id, stream_id, stream_type, stream_version, global_position, \
     event_type, schema_version, recorded_at, payload, metadata";

/// Appends `events` to a stream and enqueues them in the outbox, inside the
/// caller's transaction. Versions continue densely from the current one; if
/// the stream is not at `expected`, nothing is written and `Conflict` is returned.
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
    let new_version = advance_stream(conn, stream_type, stream_id, expected, count).await?;
    let first_version = new_version - count + 1;

    let event_ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let versions: Vec<i64> = (first_version..=new_version).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let schema_versions: Vec<i32> = events.iter().map(|e| e.schema_version).collect();
    let payloads: Vec<serde_json::Value> = events.iter().map(|e| e.payload.clone()).collect();
    let metadata = serde_json::to_value(metadata).expect("metadata serializes");

    let sql = format!(
        "WITH inserted AS (
             INSERT INTO eventstore.events
                 (event_id, stream_id, stream_type, stream_version, event_type, schema_version, payload, metadata)
             SELECT e.event_id, $2, $3, e.stream_version, e.event_type, e.schema_version, e.payload, $8
             FROM UNNEST($1::uuid[], $4::bigint[], $5::text[], $6::int[], $7::jsonb[])
                  AS e(event_id, stream_version, event_type, schema_version, payload)
             RETURNING {ENVELOPE_COLUMNS}
         ), enqueued AS (
             INSERT INTO eventstore.outbox (global_position) SELECT global_position FROM inserted
         )
         SELECT {ENVELOPE_COLUMNS} FROM inserted ORDER BY stream_version"
    );
    let mut recorded: Vec<EventEnvelope> = sqlx::query_as(&sql)
        .bind(&event_ids)
        .bind(stream_id)
        .bind(stream_type)
        .bind(&versions)
        .bind(&types)
        .bind(&schema_versions)
        .bind(&payloads)
        .bind(&metadata)
        .fetch_all(&mut *conn)
        .await
        .map_err(|source| {
            if platform::db::is_unique_violation(&source, Some("events_stream_version_unique")) {
                AppendError::Conflict {
                    stream_id,
                    expected,
                    actual: new_version,
                }
            } else {
                db(source)
            }
        })?;
    recorded.sort_by_key(|e| e.stream_version);

    sqlx::query("SELECT pg_notify($1, '')")
        .bind(OUTBOX_CHANNEL)
        .execute(&mut *conn)
        .await
        .map_err(db)?;

    let last_position = recorded
        .iter()
        .map(|e| e.global_position)
        .max()
        .unwrap_or(0);
    Ok(Appended {
        stream_version: new_version,
        last_position,
        events: recorded,
    })
}

/// Moves the stream's version forward by `count` under its row lock and
/// returns the new version, or reports a conflict.
async fn advance_stream(
    conn: &mut PgConnection,
    stream_type: &str,
    stream_id: Uuid,
    expected: ExpectedVersion,
    count: i64,
) -> Result<i64, AppendError> {
    let db = |source| AppendError::Database { stream_id, source };
    let advanced: Option<(i64, String)> = match expected {
        ExpectedVersion::Any => sqlx::query_as(
            "INSERT INTO eventstore.streams (stream_id, stream_type, version) VALUES ($1, $2, $3)
             ON CONFLICT (stream_id) DO UPDATE SET version = streams.version + EXCLUDED.version
             RETURNING version, stream_type",
        )
        .bind(stream_id)
        .bind(stream_type)
        .bind(count)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?,
        ExpectedVersion::Exact(0) => sqlx::query_as(
            "INSERT INTO eventstore.streams (stream_id, stream_type, version) VALUES ($1, $2, $3)
             ON CONFLICT (stream_id) DO NOTHING
             RETURNING version, stream_type",
        )
        .bind(stream_id)
        .bind(stream_type)
        .bind(count)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?,
        ExpectedVersion::Exact(version) => sqlx::query_as(
            "UPDATE eventstore.streams SET version = version + $3
             WHERE stream_id = $1 AND version = $2
             RETURNING version, stream_type",
        )
        .bind(stream_id)
        .bind(version)
        .bind(count)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?,
    };
    match advanced {
        Some((_, actual_type)) if actual_type != stream_type => Err(AppendError::WrongStreamType {
            stream_id,
            requested: stream_type.to_owned(),
            actual: actual_type,
        }),
        Some((version, _)) => Ok(version),
        None => {
            let actual = stream_version(conn, stream_id)
                .await
                .map_err(db)?
                .unwrap_or(0);
            Err(AppendError::Conflict {
                stream_id,
                expected,
                actual,
            })
        }
    }
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
