//! Applying one event to one projection exactly once.
//!
//! Every read-model row carries the version of its stream. Inside the
//! caller's transaction, [`apply_event`] locks that row and compares:
//!
//! - the event is at or below the row's version: a duplicate, skipped;
//! - it is the next version (or version 1 of a stream without a row): applied;
//! - it is further ahead (a gap, after a replay swap or an out-of-order
//!   redelivery): the missing events are read from the log, the source of
//!   truth, and applied in order up to and including this one.
//!
//! So redelivery never applies an event twice and a gap never loses one.

use eventstore::EventEnvelope;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projection::{Projection, Schema};

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// PostgreSQL failed; the transaction must be rolled back and retried.
    #[error("database error while {context}: {source}")]
    Database {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// The event's type or payload is not one this projector understands.
    #[error(
        "cannot project event {event_id} ({event_type}, stream {stream_id} version {stream_version}, \
         position {global_position}): {source}"
    )]
    Decode {
        /// The event's id.
        event_id: Uuid,
        /// Its type name.
        event_type: String,
        /// Its stream.
        stream_id: Uuid,
        /// Its version in the stream.
        stream_version: i64,
        /// Its position in the log.
        global_position: i64,
        /// What the decoder reported (it names the unknown type).
        #[source]
        source: domain::EventDecodeError,
    },
    /// The log does not hold the events needed to close a gap.
    #[error(
        "stream {stream_id}: version {wanted} is not in the event log (the log has up to version {found})"
    )]
    MissingFromLog {
        /// The stream.
        stream_id: Uuid,
        /// The version that was to be applied.
        wanted: i64,
        /// The last version found in the log.
        found: i64,
    },
}

impl ApplyError {
    /// A database error with what was being done.
    pub fn database(context: impl Into<String>, source: sqlx::Error) -> Self {
        Self::Database {
            context: context.into(),
            source,
        }
    }

    /// A decoding error for `event`.
    pub fn decode(event: &EventEnvelope, source: domain::EventDecodeError) -> Self {
        Self::Decode {
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            stream_id: event.stream_id,
            stream_version: event.stream_version,
            global_position: event.global_position,
            source,
        }
    }

    /// Whether retrying the same event later can succeed (the database
    /// failed), as opposed to an event that will never apply.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Database { .. })
    }
}

/// What [`apply_event`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The projection already had this version: nothing was written.
    Duplicate,
    /// This many events were applied: the event itself plus the missing
    /// earlier events of its stream read from the log.
    Events(i64),
}

/// Applies `event` to `projection` in `schema`, exactly once, inside the
/// caller's transaction (see the module documentation).
pub async fn apply_event(
    conn: &mut PgConnection,
    schema: Schema,
    projection: &dyn Projection,
    event: &EventEnvelope,
) -> Result<Applied, ApplyError> {
    let current = projection
        .current_version(conn, schema, event.stream_id)
        .await
        .map_err(|source| {
            ApplyError::database(
                format!(
                    "locking the {} row of stream {}",
                    projection.name(),
                    event.stream_id
                ),
                source,
            )
        })?
        .unwrap_or(0);
    let wanted = event.stream_version;
    if wanted <= current {
        return Ok(Applied::Duplicate);
    }
    if wanted == current + 1 {
        projection.apply(conn, schema, event).await?;
        return Ok(Applied::Events(1));
    }
    tracing::debug!(
        projection = projection.name(),
        stream_id = %event.stream_id,
        current,
        wanted,
        "gap in stream: reading the missing events from the log"
    );
    let missing = eventstore::read_stream(conn, event.stream_id, current)
        .await
        .map_err(|source| {
            ApplyError::database(format!("reading stream {}", event.stream_id), source)
        })?;
    let mut next = current + 1;
    for recorded in missing.iter().take_while(|e| e.stream_version <= wanted) {
        if recorded.stream_version != next {
            break;
        }
        projection.apply(conn, schema, recorded).await?;
        next += 1;
    }
    if next <= wanted {
        return Err(ApplyError::MissingFromLog {
            stream_id: event.stream_id,
            wanted,
            found: next - 1,
        });
    }
    Ok(Applied::Events(wanted - current))
}
