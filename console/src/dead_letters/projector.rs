//! The live projector's dead letters, through its own library
//! ([`projector::dead_letter`]): listing, showing, and re-driving through
//! the projector's normal apply path (each event read from the log).

use sqlx::PgPool;

use super::{Letter, Redrive, Redriven, Source};
use crate::error::{ConsoleError, DbContext};
use projector::dead_letter::{DeadLetter, Reapplied};

fn letter(stored: DeadLetter) -> Letter {
    let stream = stored.stream_type.clone().zip(stored.stream_id);
    let order_id = match &stream {
        Some((kind, id)) if kind == "orders" => Some(*id),
        _ => None,
    };
    Letter {
        source: Source::Projector,
        id: stored.id,
        topic: stored.topic,
        partition: stored.partition,
        offset: stored.offset,
        key: stored.message_key,
        payload: stored.payload,
        headers: stored.headers,
        event_id: stored.event_id,
        order_id,
        stream: stream.filter(|_| order_id.is_none()),
        global_position: stored.global_position,
        reason: stored.reason,
        attempts: stored.attempts,
        status: stored.status,
        created_at: stored.created_at,
    }
}

/// Dead letters, oldest first; re-driven ones too if `all`.
pub async fn list(pool: &PgPool, all: bool) -> Result<Vec<Letter>, ConsoleError> {
    let letters = projector::dead_letter::list(pool, all)
        .await
        .db_context(|| "listing projector dead letters".to_owned())?;
    Ok(letters.into_iter().map(letter).collect())
}

/// One dead letter.
pub async fn show(pool: &PgPool, id: i64) -> Result<Option<Letter>, ConsoleError> {
    let stored = projector::dead_letter::show(pool, id)
        .await
        .db_context(|| format!("reading projector dead letter #{id}"))?;
    Ok(stored.map(letter))
}

/// Re-drives `id` with the parked letters before it in its stream, or
/// every parked letter; writes the read models through `pool`.
pub async fn redrive(pool: &PgPool, id: Option<i64>) -> Result<Vec<Redriven>, ConsoleError> {
    let results = projector::dead_letter::redrive(pool, id)
        .await
        .db_context(|| "re-driving projector dead letters".to_owned())?;
    Ok(results
        .into_iter()
        .map(|result| Redriven {
            id: result.id,
            outcome: match result.outcome {
                Ok(reapplied) => Redrive::Done(describe(reapplied)),
                Err(error) => Redrive::FailedAgain(error),
            },
        })
        .collect())
}

/// What applying it did, for a person.
fn describe(reapplied: Reapplied) -> String {
    match reapplied {
        Reapplied::Applied => "applied to the read models".to_owned(),
        Reapplied::Duplicate => "the read models had it already".to_owned(),
        Reapplied::Ignored => "no projection consumes its stream".to_owned(),
    }
}
