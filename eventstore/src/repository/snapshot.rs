//! Snapshots: a stream's state at a version, kept in `eventstore.snapshots`.

use std::collections::HashMap;

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::prefetch::LoadRequest;
use super::{Base, Point};
use crate::aggregate::CommandError;

/// A snapshot about to be written.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(super) stream_id: Uuid,
    pub(super) stream_type: &'static str,
    pub(super) state_version: i32,
    pub(super) version: i64,
    pub(super) position: i64,
    pub(super) last_event_id: Uuid,
    pub(super) state: serde_json::Value,
}

/// Writes `snapshots` in one statement, each replacing an older one of its stream.
pub async fn save_snapshots(
    conn: &mut PgConnection,
    snapshots: &[Snapshot],
) -> Result<(), CommandError> {
    let Some(first) = snapshots.first() else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO eventstore.snapshots
             (stream_id, stream_type, state_version, version, position, last_event_id, state)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int[], $4::bigint[], $5::bigint[], $6::uuid[], $7::jsonb[])
         ON CONFLICT (stream_id) DO UPDATE SET
             stream_type = EXCLUDED.stream_type, state_version = EXCLUDED.state_version,
             version = EXCLUDED.version, position = EXCLUDED.position,
             last_event_id = EXCLUDED.last_event_id, state = EXCLUDED.state, taken_at = now()
         WHERE snapshots.version < EXCLUDED.version OR snapshots.state_version <> EXCLUDED.state_version",
    )
    .bind(snapshots.iter().map(|s| s.stream_id).collect::<Vec<_>>())
    .bind(snapshots.iter().map(|s| s.stream_type).collect::<Vec<_>>())
    .bind(snapshots.iter().map(|s| s.state_version).collect::<Vec<_>>())
    .bind(snapshots.iter().map(|s| s.version).collect::<Vec<_>>())
    .bind(snapshots.iter().map(|s| s.position).collect::<Vec<_>>())
    .bind(snapshots.iter().map(|s| s.last_event_id).collect::<Vec<_>>())
    .bind(snapshots.iter().map(|s| &s.state).collect::<Vec<_>>())
    .execute(conn)
    .await
    .map_err(|source| CommandError::Read {
        stream_id: first.stream_id,
        source,
    })?;
    Ok(())
}

/// The usable snapshots of `requests`: of the requested type and state
/// version, and decodable. Others are left out (their streams fold from 1).
pub(super) async fn read_snapshots(
    conn: &mut PgConnection,
    requests: &[LoadRequest],
) -> Result<HashMap<Uuid, Base>, CommandError> {
    let Some(first) = requests.first() else {
        return Ok(HashMap::new());
    };
    let ids: Vec<Uuid> = requests.iter().map(|r| r.stream_id).collect();
    let rows = sqlx::query(
        "SELECT stream_id, stream_type, state_version, version, position, last_event_id, state
         FROM eventstore.snapshots WHERE stream_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(|source| CommandError::Read {
        stream_id: first.stream_id,
        source,
    })?;
    let by_id: HashMap<Uuid, &LoadRequest> = requests.iter().map(|r| (r.stream_id, r)).collect();
    let mut bases = HashMap::new();
    for row in rows {
        let decoded = (|| -> Result<Option<(Uuid, Base)>, sqlx::Error> {
            let stream_id: Uuid = row.try_get("stream_id")?;
            let Some(request) = by_id.get(&stream_id) else {
                return Ok(None);
            };
            let stream_type: String = row.try_get("stream_type")?;
            let state_version: i32 = row.try_get("state_version")?;
            if stream_type != request.stream_type || state_version != request.state_version {
                tracing::debug!(%stream_id, state_version, "ignoring a snapshot of another state version");
                return Ok(None);
            }
            let Some(state) = (request.decode_snapshot)(row.try_get("state")?) else {
                tracing::warn!(%stream_id, "ignoring a snapshot that does not decode");
                return Ok(None);
            };
            let version: i64 = row.try_get("version")?;
            let at = Point {
                version,
                position: row.try_get("position")?,
                last_event_id: Some(row.try_get("last_event_id")?),
                snapshot_version: version,
            };
            let base = Base {
                state: Some(state),
                at,
                cached: false,
            };
            Ok(Some((stream_id, base)))
        })()
        .map_err(|source| CommandError::Read {
            stream_id: first.stream_id,
            source,
        })?;
        bases.extend(decoded);
    }
    Ok(bases)
}
