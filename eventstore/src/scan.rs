//! Bulk reads of the log for consumers that fold many streams at once: the
//! tails of many streams in one query, and a streaming scan of the whole log.

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::envelope::EventEnvelope;

/// Versions `after_version + 1 ..= up_to_version` (or to the end) of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRange {
    /// The stream.
    pub stream_id: Uuid,
    /// The last version not wanted (0 for the whole stream).
    pub after_version: i64,
    /// The last version wanted; `None` for everything there is.
    pub up_to_version: Option<i64>,
}

/// The events of every range, in one query, ordered by stream and version.
#[tracing::instrument(skip_all, fields(streams = ranges.len()))]
pub async fn read_ranges(
    conn: &mut PgConnection,
    ranges: &[StreamRange],
) -> Result<Vec<EventEnvelope>, sqlx::Error> {
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = ranges.iter().map(|r| r.stream_id).collect();
    let after: Vec<i64> = ranges.iter().map(|r| r.after_version).collect();
    let up_to: Vec<Option<i64>> = ranges.iter().map(|r| r.up_to_version).collect();
    sqlx::query_as(
        "SELECT e.event_id, e.stream_id, e.stream_type, e.stream_version, e.global_position,
                e.event_type, e.schema_version, e.recorded_at, e.payload, e.metadata
         FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[]) AS r(stream_id, after_version, up_to)
         JOIN eventstore.events e
           ON e.stream_id = r.stream_id
          AND e.stream_version > r.after_version
          AND (r.up_to IS NULL OR e.stream_version <= r.up_to)
         ORDER BY e.stream_id, e.stream_version",
    )
    .bind(&ids)
    .bind(&after)
    .bind(&up_to)
    .fetch_all(conn)
    .await
}

/// An event of a scan: the envelope without its metadata, the payload as
/// its JSON text (decoded by the reader in one pass).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ScannedEvent {
    /// Unique id.
    pub event_id: Uuid,
    /// The aggregate's id.
    pub stream_id: Uuid,
    /// The aggregate's kind.
    pub stream_type: String,
    /// Position in its stream.
    pub stream_version: i64,
    /// Position in the whole log.
    pub global_position: i64,
    /// Type name of the payload.
    pub event_type: String,
    /// Version of the payload's schema.
    pub schema_version: i32,
    /// When the log recorded it.
    pub recorded_at: DateTime<Utc>,
    /// The payload's JSON text.
    pub payload: String,
}

/// Every event of the given stream types, in log order, streamed as the
/// server produces them (one statement: one consistent snapshot). Every
/// stream's events come in version order, since a version is appended only
/// after the previous one committed.
pub fn scan<'c>(
    conn: &'c mut PgConnection,
    stream_types: &'c [String],
) -> BoxStream<'c, Result<ScannedEvent, sqlx::Error>> {
    sqlx::query_as(
        "SELECT event_id, stream_id, stream_type, stream_version, global_position,
                event_type, schema_version, recorded_at, payload::text AS payload
         FROM eventstore.events WHERE stream_type = ANY($1) ORDER BY global_position",
    )
    .bind(stream_types)
    .fetch(conn)
}
