//! The dead-letter queue: messages the worker cannot process after bounded
//! attempts (or cannot parse) go to `<topic>.dlq`, with headers saying why,
//! where they came from and how often they were tried, and to
//! `saga.dead_letters`; the consumer goes on.
//!
//! Ordering choice: while an event of an order is parked, every later event
//! of the same order is parked behind it (reason `blocked by dead letter
//! #N`), so the saga never sees an order's events out of order. Re-driving
//! processes parked letters oldest first, which replays them in order.

use std::collections::HashSet;

use platform::dead_letter::DeadLetterPublisher;
use platform::kafka::KafkaConfig;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use eventstore::EventEnvelope;

use crate::handler::{Handled, Handler};

pub use platform::dead_letter::Letter;

/// A parked (or re-driven) message, as stored.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct DeadLetter {
    /// Id, in parking order.
    pub id: i64,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Message key.
    pub message_key: Option<String>,
    /// Message value.
    pub payload: String,
    /// Message headers.
    pub headers: serde_json::Value,
    /// The event's id, if it parsed.
    pub event_id: Option<Uuid>,
    /// The order it concerns, if known.
    pub order_id: Option<Uuid>,
    /// Why it was parked.
    pub reason: String,
    /// How often it was tried.
    pub attempts: i32,
    /// `parked` or `redriven`.
    pub status: String,
    /// When it was parked.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Parks messages.
pub struct DeadLetters {
    pool: PgPool,
    publisher: DeadLetterPublisher,
}

impl DeadLetters {
    /// Parks through `pool` and a producer on `kafka`.
    pub fn new(pool: PgPool, kafka: &KafkaConfig) -> Result<Self, rdkafka::error::KafkaError> {
        let publisher = DeadLetterPublisher::new(kafka, "saga")?;
        Ok(Self { pool, publisher })
    }

    /// Publishes `letter` to `<topic>.dlq` and records it; idempotent per
    /// source offset.
    pub async fn park(
        &self,
        letter: &Letter,
        reason: &str,
        attempts: u32,
        event_id: Option<Uuid>,
        order_id: Option<Uuid>,
    ) -> anyhow::Result<()> {
        self.publisher.publish(letter, reason, attempts).await?;
        let mut conn = self.pool.acquire().await?;
        insert(&mut conn, letter, reason, attempts, event_id, order_id).await?;
        parked(letter, reason, attempts);
        Ok(())
    }

    /// Parks `letter` (an event of `order_id`) behind the oldest parked
    /// letter of its order, if there still is one; `None` if there is none
    /// (the caller handles the event). Checked and written under the
    /// order's lock, which [`redrive`] holds while it clears the order's
    /// letters: an event is never parked behind a letter that a re-drive
    /// has just cleared (it would wait there for good).
    pub async fn park_behind(
        &self,
        letter: &Letter,
        event_id: Uuid,
        order_id: Uuid,
    ) -> anyhow::Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        lock_order(&mut tx, order_id).await?;
        let blocker: Option<i64> = sqlx::query_scalar(
            "SELECT min(id) FROM saga.dead_letters WHERE order_id = $1 AND status = 'parked'",
        )
        .bind(order_id)
        .fetch_one(&mut *tx)
        .await?;
        let Some(blocker) = blocker else {
            return Ok(None);
        };
        let reason = format!("blocked by dead letter #{blocker} of order {order_id}");
        self.publisher.publish(letter, &reason, 0).await?;
        insert(&mut tx, letter, &reason, 0, Some(event_id), Some(order_id)).await?;
        tx.commit().await?;
        parked(letter, &reason, 0);
        Ok(Some(blocker))
    }

    /// Which of `order_ids` have a parked dead letter (their events wait
    /// behind it); one query for a whole batch.
    pub async fn blocked(&self, order_ids: &[Uuid]) -> Result<HashSet<Uuid>, sqlx::Error> {
        let blocked: Vec<Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT order_id FROM saga.dead_letters
             WHERE order_id = ANY($1) AND status = 'parked'",
        )
        .bind(order_ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(blocked.into_iter().collect())
    }
}

/// Takes `order_id`'s dead-letter lock until the transaction ends.
/// (Two-key advisory locks live apart from the one-key locks used elsewhere.)
pub async fn lock_order(conn: &mut PgConnection, order_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('saga.dead_letters'), hashtext($1))")
        .bind(order_id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

async fn insert(
    conn: &mut PgConnection,
    letter: &Letter,
    reason: &str,
    attempts: u32,
    event_id: Option<Uuid>,
    order_id: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"INSERT INTO saga.dead_letters
               (topic, partition, "offset", message_key, payload, headers, event_id, order_id, reason, attempts)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (topic, partition, "offset") DO NOTHING"#,
    )
    .bind(&letter.topic)
    .bind(letter.partition)
    .bind(letter.offset)
    .bind(&letter.key)
    .bind(&letter.payload)
    .bind(letter.headers_json())
    .bind(event_id)
    .bind(order_id)
    .bind(reason)
    .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
    .execute(conn)
    .await?;
    Ok(())
}

fn parked(letter: &Letter, reason: &str, attempts: u32) {
    tracing::error!(topic = %letter.topic, partition = letter.partition, offset = letter.offset, %reason, attempts, "message dead-lettered");
    crate::metrics::record_dead_letter(&letter.topic);
}

const COLUMNS: &str = r#"id, topic, partition, "offset", message_key, payload, headers, event_id, order_id, reason, attempts, status, created_at"#;

/// Dead letters, oldest first; only parked ones unless `all`.
pub async fn list(pool: &PgPool, all: bool) -> Result<Vec<DeadLetter>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM saga.dead_letters WHERE $1 OR status = 'parked' ORDER BY id"
    ))
    .bind(all)
    .fetch_all(pool)
    .await
}

/// One dead letter.
pub async fn show(pool: &PgPool, id: i64) -> Result<Option<DeadLetter>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM saga.dead_letters WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Result of re-driving one dead letter.
#[derive(Debug)]
pub struct Redriven {
    /// The dead letter.
    pub id: i64,
    /// What the handler did, or why it failed again.
    pub outcome: Result<Handled, String>,
}

/// Re-drives parked dead letters through the same handler as the
/// consumer: `id` together with the other parked letters of its order, or
/// every parked letter when `None`. An order's letters go oldest first
/// under the order's lock (see [`DeadLetters::park_behind`]), so the
/// events the re-drive itself causes are handled, not parked behind a
/// letter being cleared. Each success is marked `redriven`; a failure stays
/// parked and stops its order (later letters must not overtake it), and
/// with `None` the whole run.
pub async fn redrive(
    pool: &PgPool,
    handler: &Handler,
    id: Option<i64>,
) -> Result<Vec<Redriven>, sqlx::Error> {
    let parked: Vec<DeadLetter> = match id {
        Some(id) => show(pool, id)
            .await?
            .into_iter()
            .filter(|l| l.status == "parked")
            .collect(),
        None => list(pool, false).await?,
    };
    let mut results = Vec::new();
    let mut orders_done = HashSet::new();
    for letter in parked {
        let failed = match letter.order_id {
            Some(order_id) if !orders_done.insert(order_id) => continue,
            Some(order_id) => {
                let (redriven, failed) = redrive_order(pool, handler, order_id).await?;
                results.extend(redriven);
                failed
            }
            None => {
                let mut conn = pool.acquire().await?;
                let outcome = redrive_letter(&mut conn, handler, &letter).await?;
                let failed = outcome.is_err();
                results.push(Redriven {
                    id: letter.id,
                    outcome,
                });
                failed
            }
        };
        if failed && id.is_none() {
            break;
        }
    }
    Ok(results)
}

/// Re-drives every parked letter of `order_id`, oldest first, under the
/// order's lock; `true` if one failed again (the rest stay parked behind it).
async fn redrive_order(
    pool: &PgPool,
    handler: &Handler,
    order_id: Uuid,
) -> Result<(Vec<Redriven>, bool), sqlx::Error> {
    let mut tx = pool.begin().await?;
    lock_order(&mut tx, order_id).await?;
    let letters: Vec<DeadLetter> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM saga.dead_letters WHERE order_id = $1 AND status = 'parked' ORDER BY id"
    ))
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    let mut results = Vec::new();
    let mut failed = false;
    for letter in letters {
        let outcome = redrive_letter(&mut tx, handler, &letter).await?;
        failed = outcome.is_err();
        results.push(Redriven {
            id: letter.id,
            outcome,
        });
        if failed {
            break;
        }
    }
    // Marks and lock go together: the consumer then sees the order clear.
    tx.commit().await?;
    Ok((results, failed))
}

/// Handles one letter's event (in the handler's own transaction) and, if
/// that worked, marks the letter `redriven` through `conn`. A crash in
/// between leaves it parked; re-driving it again is a duplicate, no effect.
async fn redrive_letter(
    conn: &mut PgConnection,
    handler: &Handler,
    letter: &DeadLetter,
) -> Result<Result<Handled, String>, sqlx::Error> {
    let outcome = match serde_json::from_str::<EventEnvelope>(&letter.payload) {
        Err(error) => Err(format!("still unparseable: {error}")),
        Ok(event) => handler.handle(&event).await.map_err(|e| e.to_string()),
    };
    if outcome.is_ok() {
        sqlx::query(
            "UPDATE saga.dead_letters SET status = 'redriven', redriven_at = now() WHERE id = $1",
        )
        .bind(letter.id)
        .execute(conn)
        .await?;
    }
    Ok(outcome)
}
