//! Loading an aggregate from its stream and running a command against it,
//! for any [`domain::Aggregate`], through the process's shared
//! [`Repository`](crate::repository::Repository) (cached state, snapshots).

use domain::Aggregate;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::envelope::Metadata;
use crate::repository::Repository;
use crate::store::{AppendError, Appended};

pub use crate::repository::Loaded;

/// Why loading or running a command failed in the infrastructure.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Reading the stream (or its snapshot) failed.
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
    /// The stream exists with another type than the aggregate's.
    #[error("stream {stream_id} has type {actual}, not {requested}")]
    WrongStreamType {
        /// The stream.
        stream_id: Uuid,
        /// The aggregate's stream type.
        requested: &'static str,
        /// The stream's type.
        actual: String,
    },
    /// A stream was folded from a prefetch that did not read it (a bug).
    #[error("stream {0} was not prefetched as this aggregate")]
    NotPrefetched(Uuid),
    /// The append failed (a conflict means another writer got there first).
    #[error(transparent)]
    Append(#[from] AppendError),
}

/// Folds the stream `stream_id` into `A`'s state.
pub async fn load<A: Aggregate>(
    conn: &mut PgConnection,
    stream_id: Uuid,
) -> Result<Loaded<A::State>, CommandError> {
    Repository::shared().load::<A>(conn, stream_id).await
}

/// Loads `A` from `stream_id`, decides `command` and appends the events
/// (expecting the loaded version) in the caller's transaction; see
/// [`Repository::execute`].
pub async fn execute<A: Aggregate>(
    conn: &mut PgConnection,
    stream_id: Uuid,
    command: A::Command,
    metadata: &Metadata,
) -> Result<Result<Option<Appended>, A::Error>, CommandError> {
    Repository::shared()
        .execute::<A>(conn, stream_id, command, metadata)
        .await
}
