//! The saga worker's dead letters, through its own library
//! ([`saga::dead_letter`]): listing, showing, and re-driving through the
//! same handler the worker runs.

use sqlx::PgPool;

use super::{Letter, Redrive, Source};
use crate::error::{ConsoleError, DbContext};

fn letter(stored: saga::dead_letter::DeadLetter) -> Letter {
    Letter {
        source: Source::Saga,
        id: stored.id,
        topic: stored.topic,
        partition: stored.partition,
        offset: stored.offset,
        key: stored.message_key,
        payload: stored.payload,
        headers: stored.headers,
        event_id: stored.event_id,
        order_id: stored.order_id,
        reason: stored.reason,
        attempts: stored.attempts,
        status: stored.status,
        created_at: stored.created_at,
    }
}

/// Dead letters, oldest first; re-driven ones too if `all`.
pub async fn list(pool: &PgPool, all: bool) -> Result<Vec<Letter>, ConsoleError> {
    let letters = saga::dead_letter::list(pool, all)
        .await
        .db_context(|| "listing saga dead letters".to_owned())?;
    Ok(letters.into_iter().map(letter).collect())
}

/// One dead letter.
pub async fn show(pool: &PgPool, id: i64) -> Result<Option<Letter>, ConsoleError> {
    let stored = saga::dead_letter::show(pool, id)
        .await
        .db_context(|| format!("reading saga dead letter #{id}"))?;
    Ok(stored.map(letter))
}

/// Re-drives dead letter `id` through `handler` (whose pool may write).
pub async fn redrive(
    pool: &PgPool,
    handler: &saga::Handler,
    id: i64,
) -> Result<Redrive, ConsoleError> {
    let results = saga::dead_letter::redrive(pool, handler, Some(id))
        .await
        .db_context(|| format!("re-driving saga dead letter #{id}"))?;
    Ok(match results.into_iter().next() {
        None => Redrive::NotParked,
        Some(result) => match result.outcome {
            Ok(handled) => Redrive::Done(format!("{handled:?}")),
            Err(error) => Redrive::FailedAgain(error),
        },
    })
}
