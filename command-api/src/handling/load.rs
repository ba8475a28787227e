//! Rebuilding an aggregate from its stream.

use domain::DomainEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{ApiError, DbContext};

/// An aggregate's state and the stream version it was rebuilt at.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<S> {
    /// The state after every event of the stream.
    pub state: S,
    /// The version of the last event (0 if the stream has none).
    pub version: i64,
    /// The global position of the last event (0 if the stream has none).
    pub position: i64,
}

/// Reads stream `stream_id` and folds its events with `evolve`.
///
/// With `lock`, first takes the stream's row lock (held until the
/// transaction ends), so no other writer can append before this one does.
/// A stream of another type than `E`'s is [`ApiError::ForeignStream`].
#[tracing::instrument(skip(conn, evolve), fields(stream_type = E::STREAM_TYPE))]
pub async fn load<E, S>(
    conn: &mut PgConnection,
    stream_id: Uuid,
    lock: bool,
    evolve: fn(S, &E) -> S,
) -> Result<Loaded<S>, ApiError>
where
    E: DomainEvent,
    S: Default,
{
    if lock {
        sqlx::query("SELECT 1 FROM eventstore.streams WHERE stream_id = $1 FOR UPDATE")
            .bind(stream_id)
            .execute(&mut *conn)
            .await
            .during(|| format!("locking stream {stream_id}"))?;
    }
    let events = eventstore::read_stream(conn, stream_id, 0)
        .await
        .during(|| format!("reading stream {stream_id}"))?;
    let mut loaded = Loaded {
        state: S::default(),
        version: 0,
        position: 0,
    };
    for envelope in &events {
        if envelope.stream_type != E::STREAM_TYPE {
            return Err(ApiError::ForeignStream {
                id: stream_id,
                expected: E::STREAM_TYPE.to_owned(),
                actual: envelope.stream_type.clone(),
            });
        }
        let event = envelope.decode::<E>().map_err(|error| {
            ApiError::Internal(format!(
                "decoding event {} of stream {stream_id}: {error}",
                envelope.stream_version
            ))
        })?;
        loaded.state = evolve(loaded.state, &event);
        loaded.version = envelope.stream_version;
        loaded.position = envelope.global_position;
    }
    Ok(loaded)
}
