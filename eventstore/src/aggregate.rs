//! Loading an aggregate from its stream and running a command against it,
//! for any [`domain::Aggregate`].

use domain::{Aggregate, DomainEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::envelope::{Metadata, NewEvent};
use crate::store::{append, read_stream, AppendError, Appended, ExpectedVersion};

/// An aggregate's state and the stream version it was folded up to.
#[derive(Debug)]
pub struct Loaded<S> {
    /// The state.
    pub state: S,
    /// The stream's version (0: no events).
    pub version: i64,
}

/// Why loading or running a command failed in the infrastructure.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Reading the stream failed.
    #[error("reading stream {stream_id}: {source}")]
    Read {
        /// The stream.
        stream_id: Uuid,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// A recorded event could not be decoded.
    #[error("decoding stream {stream_id}: {source}")]
    Decode {
        /// The stream.
        stream_id: Uuid,
        /// The underlying error.
        #[source]
        source: domain::EventDecodeError,
    },
    /// The append failed (a conflict means another writer got there first).
    #[error(transparent)]
    Append(#[from] AppendError),
}

/// Folds the stream `stream_id` into `A`'s state.
pub async fn load<A: Aggregate>(
    conn: &mut PgConnection,
    stream_id: Uuid,
) -> Result<Loaded<A::State>, CommandError> {
    let events = read_stream(conn, stream_id, 0)
        .await
        .map_err(|source| CommandError::Read { stream_id, source })?;
    let mut state = A::State::default();
    let mut version = 0;
    for envelope in &events {
        let event: A::Event = envelope
            .decode()
            .map_err(|source| CommandError::Decode { stream_id, source })?;
        state = A::evolve(state, &event);
        version = envelope.stream_version;
    }
    Ok(Loaded { state, version })
}

/// Loads `A` from `stream_id`, decides `command` and appends the events
/// (expecting the loaded version) in the caller's transaction. The outer
/// result is the infrastructure's, the inner one the domain's; `Ok(None)`
/// inside means the command changed nothing.
pub async fn execute<A: Aggregate>(
    conn: &mut PgConnection,
    stream_id: Uuid,
    command: A::Command,
    metadata: &Metadata,
) -> Result<Result<Option<Appended>, A::Error>, CommandError> {
    let loaded = load::<A>(conn, stream_id).await?;
    let events = match A::decide(&loaded.state, command) {
        Ok(events) => events,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if events.is_empty() {
        return Ok(Ok(None));
    }
    let new_events: Vec<NewEvent> = events.iter().map(NewEvent::from_domain).collect();
    let appended = append(
        conn,
        <A::Event as DomainEvent>::STREAM_TYPE,
        stream_id,
        ExpectedVersion::Exact(loaded.version),
        &new_events,
        metadata,
    )
    .await?;
    Ok(Ok(Some(appended)))
}
