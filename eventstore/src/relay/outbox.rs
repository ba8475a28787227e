//! The relay's statements on the outbox, all on the leader's connection.
//!
//! No high-water mark: every read starts at the oldest row still in the
//! outbox and only leaves out the rows this relay has in flight, so a row
//! whose transaction took an earlier position but committed later is read
//! as soon as it is visible.

use std::collections::HashSet;

use sqlx::PgConnection;
use uuid::Uuid;

use super::RelayError;

/// The oldest visible outbox rows that are not in `in_flight`, at most
/// `limit`, in log order, ready to publish.
///
/// Per-stream order: version N+1 of a stream is appended only after the
/// transaction holding N committed, and gets a higher position; so whenever
/// N+1 is visible, N is visible too and comes first (or is already in
/// flight or delivered).
pub(super) async fn read_batch(
    conn: &mut PgConnection,
    in_flight: &HashSet<i64>,
    limit: usize,
) -> Result<Vec<Outgoing>, RelayError> {
    let scan = i64::try_from(in_flight.len() + limit).unwrap_or(i64::MAX);
    let oldest: Vec<i64> = sqlx::query_scalar(
        "SELECT global_position FROM eventstore.outbox ORDER BY global_position LIMIT $1",
    )
    .bind(scan)
    .fetch_all(&mut *conn)
    .await
    .map_err(|source| RelayError::Database {
        action: "reading the outbox",
        source,
    })?;
    let fresh: Vec<i64> = oldest
        .into_iter()
        .filter(|position| !in_flight.contains(position))
        .take(limit)
        .collect();
    if fresh.is_empty() {
        return Ok(Vec::new());
    }
    // Only the leader deletes outbox rows, so these are all still there.
    sqlx::query_as(OUTGOING)
        .bind(&fresh)
        .fetch_all(&mut *conn)
        .await
        .map_err(|source| RelayError::Database {
            action: "reading the outbox's events",
            source,
        })
}

/// One event ready to publish: its ids for the key and headers, and the
/// envelope as JSON text built by PostgreSQL (the serialized
/// [`EventEnvelope`](crate::EventEnvelope): same fields, `recorded_at` in
/// RFC 3339 UTC), so the relay neither parses nor re-serializes payloads.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct Outgoing {
    pub global_position: i64,
    pub event_id: Uuid,
    pub stream_id: Uuid,
    pub stream_type: String,
    pub stream_version: i64,
    pub event_type: String,
    pub correlation_id: String,
    pub causation_id: String,
    pub traceparent: Option<String>,
    pub value: String,
}

const OUTGOING: &str = r#"
    SELECT global_position, event_id, stream_id, stream_type, stream_version, event_type,
           coalesce(metadata->>'correlation_id', '') AS correlation_id,
           coalesce(metadata->>'causation_id', '') AS causation_id,
           metadata->>'traceparent' AS traceparent,
           json_build_object(
               'event_id', event_id,
               'stream_id', stream_id,
               'stream_type', stream_type,
               'stream_version', stream_version,
               'global_position', global_position,
               'event_type', event_type,
               'schema_version', schema_version,
               'recorded_at', to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'payload', payload,
               'metadata', metadata
           )::text AS value
    FROM eventstore.events WHERE global_position = ANY($1)
    ORDER BY global_position"#;

/// Removes delivered rows, in one statement.
pub(super) async fn remove(conn: &mut PgConnection, positions: &[i64]) -> Result<(), RelayError> {
    if positions.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM eventstore.outbox WHERE global_position = ANY($1)")
        .bind(positions)
        .execute(&mut *conn)
        .await
        .map_err(|source| RelayError::Database {
            action: "removing delivered outbox rows",
            source,
        })?;
    Ok(())
}
