//! The saga worker's dead letters, through its own library
//! ([`saga::dead_letter`]): listing, showing, and re-driving through the
//! same handler the worker runs.

use sqlx::PgPool;

use saga::handler::Handled;

use super::{Letter, Redrive, Redriven, Source};
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
        stream: None,
        global_position: None,
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

/// Re-drives parked dead letter `id`, or every parked one oldest first
/// (stopping at the first that fails again), through `handler` (whose pool
/// may write); what happened to each.
pub async fn redrive(
    pool: &PgPool,
    handler: &saga::Handler,
    id: Option<i64>,
) -> Result<Vec<Redriven>, ConsoleError> {
    let results = saga::dead_letter::redrive(pool, handler, id)
        .await
        .db_context(|| "re-driving saga dead letters".to_owned())?;
    Ok(results
        .into_iter()
        .map(|result| Redriven {
            id: result.id,
            outcome: match result.outcome {
                Ok(handled) => Redrive::Done(describe(&handled)),
                Err(error) => Redrive::FailedAgain(error),
            },
        })
        .collect())
}

/// What the saga's handler did, for a person.
fn describe(handled: &Handled) -> String {
    match handled {
        Handled::Ignored => "the saga does not react to this event".to_owned(),
        Handled::Duplicate => "the saga had handled this event already; nothing changed".to_owned(),
        Handled::Applied {
            order_id,
            effect_due: true,
        } => format!("applied to order {order_id}; a provider call is now due"),
        Handled::Applied { order_id, .. } => format!("applied to order {order_id}"),
    }
}
