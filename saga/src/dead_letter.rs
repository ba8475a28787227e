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
use sqlx::PgPool;
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
    /// source offset. Returns the dead letter's id.
    pub async fn park(
        &self,
        letter: &Letter,
        reason: &str,
        attempts: u32,
        event_id: Option<Uuid>,
        order_id: Option<Uuid>,
    ) -> anyhow::Result<()> {
        self.publisher.publish(letter, reason, attempts).await?;
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
        .execute(&self.pool)
        .await?;
        tracing::error!(topic = %letter.topic, partition = letter.partition, offset = letter.offset, %reason, attempts, "message dead-lettered");
        crate::metrics::record_dead_letter(&letter.topic);
        Ok(())
    }

    /// The oldest parked dead letter of `order_id`, if any: later events of
    /// that order wait behind it.
    pub async fn blocker(&self, order_id: Uuid) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT min(id) FROM saga.dead_letters WHERE order_id = $1 AND status = 'parked'",
        )
        .bind(order_id)
        .fetch_one(&self.pool)
        .await
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

/// Re-drives parked dead letters (`id`, or all when `None`), oldest first,
/// through the same handler as the consumer. Each success is marked
/// `redriven`; a failure stays parked, and with `all` it stops the run
/// (later letters of the same order must not overtake it).
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
    for letter in parked {
        let outcome = match serde_json::from_str::<EventEnvelope>(&letter.payload) {
            Err(error) => Err(format!("still unparseable: {error}")),
            Ok(event) => handler.handle(&event).await.map_err(|e| e.to_string()),
        };
        if outcome.is_ok() {
            sqlx::query("UPDATE saga.dead_letters SET status = 'redriven', redriven_at = now() WHERE id = $1")
                .bind(letter.id)
                .execute(pool)
                .await?;
        }
        let failed = outcome.is_err();
        results.push(Redriven {
            id: letter.id,
            outcome,
        });
        if failed && id.is_none() {
            break;
        }
    }
    Ok(results)
}
