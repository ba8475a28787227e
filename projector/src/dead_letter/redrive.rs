//! Re-drive: a stream's parked letters, oldest first, applied again
//! through the normal apply path from the event log.

use std::collections::HashSet;

use eventstore::scan::{self, StreamRange};
use eventstore::EventEnvelope;
use sqlx::PgPool;
use uuid::Uuid;

use super::park::lock_stream;
use super::{list, show, DeadLetter, COLUMNS};
use crate::apply::{ApplyError, Verdict};
use crate::projection::{self, Decoded};

/// What re-driving one letter did to the read models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reapplied {
    /// Its event was applied (with any earlier event of its stream the read
    /// models lacked, from the log).
    Applied,
    /// The read models already had it (e.g. re-driving an earlier letter of
    /// its stream filled it in from the log).
    Duplicate,
    /// No projection consumes its stream type.
    Ignored,
}

/// The result of re-driving one dead letter (`saga::dead_letter::Redriven`'s
/// counterpart).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Redriven {
    /// The dead letter.
    pub id: i64,
    /// What applying it did, or why it failed again (it stays parked, its
    /// attempts counted up, and the later letters of its stream wait).
    pub outcome: Result<Reapplied, String>,
}

/// The name the console uses for [`Redriven`].
pub type RedriveResult = Redriven;

/// Re-drives parked dead letters, oldest first, through the normal apply
/// path, each event read from the event log:
///
/// - `Some(id)`: every parked letter of `id`'s stream (a letter cannot go
///   before the earlier ones of its stream), or `id` alone if its stream is
///   unknown;
/// - `None`: every parked letter, stream by stream (in the order of each
///   stream's oldest letter).
///
/// Each success is marked `redriven`. The first failure of a stream stays
/// parked with attempts + 1 and the stream's later letters are not tried
/// (they stay parked behind it); other streams go on. Once a stream's
/// letters are all re-driven it is looked at again, so an event the live
/// projector parked behind them meanwhile is re-driven too. A letter that is
/// not parked (or does not exist) yields no result. Only database failures
/// are errors.
pub async fn redrive(pool: &PgPool, id: Option<i64>) -> Result<Vec<Redriven>, sqlx::Error> {
    let parked: Vec<DeadLetter> = match id {
        Some(id) => show(pool, id)
            .await?
            .into_iter()
            .filter(|l| l.status == "parked")
            .collect(),
        None => list(pool, false).await?,
    };
    // Units of work in order: a stream (all its parked letters), or a
    // letter that names none.
    let mut streams_seen: HashSet<Uuid> = HashSet::new();
    let mut units: Vec<Result<Uuid, DeadLetter>> = Vec::new();
    for letter in parked {
        match letter.stream_id {
            Some(stream) if streams_seen.insert(stream) => units.push(Ok(stream)),
            Some(_) => {}
            None => units.push(Err(letter)),
        }
    }
    let mut results = Vec::new();
    for unit in units {
        match unit {
            Err(letter) => {
                let outcome = redrive_letter(pool, &letter).await?;
                results.push(Redriven {
                    id: letter.id,
                    outcome,
                });
            }
            Ok(stream) => redrive_stream(pool, stream, &mut results).await?,
        }
    }
    Ok(results)
}

/// Passes over one stream's parked letters: letters parked by the live
/// projector during a re-drive are picked up by the next pass.
const STREAM_PASSES: usize = 10;

/// Re-drives `stream`'s parked letters oldest first, until none is left or
/// one fails again.
async fn redrive_stream(
    pool: &PgPool,
    stream: Uuid,
    results: &mut Vec<Redriven>,
) -> Result<(), sqlx::Error> {
    for _ in 0..STREAM_PASSES {
        let letters = parked_of_stream(pool, stream).await?;
        if letters.is_empty() {
            return Ok(());
        }
        for letter in letters {
            let outcome = redrive_letter(pool, &letter).await?;
            let failed = outcome.is_err();
            results.push(Redriven {
                id: letter.id,
                outcome,
            });
            if failed {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Re-drives one letter and records the outcome: `redriven`, or attempts + 1.
async fn redrive_letter(
    pool: &PgPool,
    letter: &DeadLetter,
) -> Result<Result<Reapplied, String>, sqlx::Error> {
    let outcome = redrive_one(pool, letter).await?;
    match &outcome {
        Ok(_) => {
            // Under the stream's lock: the live projector either parked its
            // next event before this (the next pass finds it) or sees the
            // stream free.
            let mut tx = pool.begin().await?;
            if let Some(stream) = letter.stream_id {
                lock_stream(&mut tx, stream).await?;
            }
            sqlx::query(
                "UPDATE projector.dead_letters SET status = 'redriven', redriven_at = now()
                 WHERE id = $1 AND status = 'parked'",
            )
            .bind(letter.id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!(dead_letter = letter.id, "dead letter re-driven");
        }
        Err(error) => {
            sqlx::query(
                "UPDATE projector.dead_letters SET attempts = attempts + 1
                 WHERE id = $1 AND status = 'parked'",
            )
            .bind(letter.id)
            .execute(pool)
            .await?;
            tracing::warn!(dead_letter = letter.id, %error, "dead letter failed again");
        }
    }
    Ok(outcome)
}

async fn parked_of_stream(pool: &PgPool, stream: Uuid) -> Result<Vec<DeadLetter>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM projector.dead_letters
         WHERE stream_id = $1 AND status = 'parked' ORDER BY id"
    ))
    .bind(stream)
    .fetch_all(pool)
    .await
}

/// Applies one letter's event from the log; the inner error says why it
/// failed again. A letter that names its stream but not its event (a
/// message without the relay's headers, keyed by stream id) brings the
/// stream up to date with the log instead.
async fn redrive_one(
    pool: &PgPool,
    letter: &DeadLetter,
) -> Result<Result<Reapplied, String>, sqlx::Error> {
    let event_id = letter
        .event_id
        .or_else(|| envelope_event_id(&letter.payload));
    let envelope = match (event_id, letter.stream_id) {
        (Some(event_id), _) => match read_event(pool, event_id).await? {
            Some(envelope) => envelope,
            None => return Ok(Err(format!("event {event_id} is not in the event log"))),
        },
        (None, Some(stream)) => match read_last_event(pool, stream).await? {
            Some(envelope) => envelope,
            None => return Ok(Err(format!("stream {stream} has no events in the log"))),
        },
        (None, None) => {
            return Ok(Err(
                "the message names no event and no stream (no relay headers, no stream id as \
                 key, and the value is not an event envelope), so there is nothing to read from \
                 the event log; it holds no stream back"
                    .to_owned(),
            ))
        }
    };
    let event = Decoded::from_envelope(&envelope);
    if projection::interested_in(&event.stream_type)
        .next()
        .is_none()
    {
        return Ok(Ok(Reapplied::Ignored));
    }
    let verdict = match crate::consumer::project_batch(pool, std::slice::from_ref(&event)).await {
        Ok(verdicts) => verdicts.into_iter().next(),
        Err(ApplyError::Database { context, source }) => {
            return Err(std::sync::Arc::try_unwrap(source).unwrap_or_else(|shared| {
                sqlx::Error::Protocol(format!("while {context}: {shared}"))
            }))
        }
        Err(other) => return Ok(Err(other.to_string())),
    };
    Ok(match verdict {
        Some(Verdict::Applied) => Ok(Reapplied::Applied),
        Some(Verdict::Duplicate) => Ok(Reapplied::Duplicate),
        Some(Verdict::Ignored) | None => Ok(Reapplied::Ignored),
        Some(Verdict::Rejected(error)) => Err(error.to_string()),
    })
}

/// The `event_id` of a value that is JSON with one, even if it is not a
/// whole envelope.
fn envelope_event_id(payload: &str) -> Option<Uuid> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    value.get("event_id")?.as_str()?.parse().ok()
}

/// The last event of `stream` in the log.
async fn read_last_event(
    pool: &PgPool,
    stream: Uuid,
) -> Result<Option<EventEnvelope>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let Some(version) = eventstore::store::stream_version(&mut conn, stream).await? else {
        return Ok(None);
    };
    read_version(&mut conn, stream, version).await
}

/// The event `event_id` from the log.
async fn read_event(pool: &PgPool, event_id: Uuid) -> Result<Option<EventEnvelope>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let at: Option<(Uuid, i64)> = sqlx::query_as(
        "SELECT stream_id, stream_version FROM eventstore.events WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((stream_id, version)) = at else {
        return Ok(None);
    };
    read_version(&mut conn, stream_id, version).await
}

/// Version `version` of `stream_id` from the log.
async fn read_version(
    conn: &mut sqlx::PgConnection,
    stream_id: Uuid,
    version: i64,
) -> Result<Option<EventEnvelope>, sqlx::Error> {
    let range = StreamRange {
        stream_id,
        after_version: version - 1,
        up_to_version: Some(version),
    };
    Ok(scan::read_ranges(conn, &[range]).await?.pop())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_is_found_in_json_that_is_not_a_whole_envelope() {
        let id = Uuid::now_v7();
        assert_eq!(
            envelope_event_id(&format!(r#"{{"event_id":"{id}","stream_type":7}}"#)),
            Some(id)
        );
        assert_eq!(envelope_event_id("{not json"), None);
        assert_eq!(envelope_event_id(r#"{"event_id":"x"}"#), None);
    }
}
