//! The relay's statements on the outbox, all on the leader's connection.
//!
//! No high-water mark: every read starts at the oldest row still in the
//! outbox and only leaves out the rows this relay has in flight, so a row
//! whose transaction took an earlier position but committed later is read
//! as soon as it is visible.

use std::collections::HashSet;

use sqlx::PgConnection;

use super::RelayError;
use crate::envelope::EventEnvelope;

/// The oldest visible outbox rows that are not in `in_flight`, at most
/// `limit`, in log order, as envelopes.
///
/// Per-stream order: version N+1 of a stream is appended only after the
/// transaction holding N committed, and gets a higher position; so whenever
/// N+1 is visible, N is visible too and comes first (or is already in
/// flight or delivered).
pub(super) async fn read_batch(
    conn: &mut PgConnection,
    in_flight: &HashSet<i64>,
    limit: usize,
) -> Result<Vec<EventEnvelope>, RelayError> {
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
    sqlx::query_as(
        "SELECT event_id, stream_id, stream_type, stream_version, global_position,
                event_type, schema_version, recorded_at, payload, metadata
         FROM eventstore.events WHERE global_position = ANY($1)
         ORDER BY global_position",
    )
    .bind(&fresh)
    .fetch_all(&mut *conn)
    .await
    .map_err(|source| RelayError::Database {
        action: "reading the outbox's events",
        source,
    })
}

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
