//! The Kafka side of the worker: at-least-once consumption, exactly-once
//! effect (the handler dedups by event id in its transaction), offsets
//! stored only after the handler committed, bounded retries, then the
//! dead-letter queue.

use std::sync::Arc;
use std::time::Duration;

use platform::kafka::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use eventstore::EventEnvelope;

use crate::dead_letter::{DeadLetters, Letter};
use crate::handler::{Handled, Handler};
use crate::routing::route;

/// Tuning of the consumer.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Consumer group.
    pub group_id: String,
    /// Attempts before a message is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            group_id: "saga".into(),
            max_attempts: 5,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
        }
    }
}

/// Consumes the event topics for the saga.
pub struct SagaConsumer {
    consumer: StreamConsumer,
    handler: Arc<Handler>,
    dead_letters: DeadLetters,
    settings: ConsumerSettings,
    wake: Arc<Notify>,
}

impl SagaConsumer {
    /// Subscribes to every event topic of `kafka`.
    pub fn new(
        pool: PgPool,
        kafka: &KafkaConfig,
        handler: Arc<Handler>,
        settings: ConsumerSettings,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = kafka
            .client_config()
            .set("group.id", &settings.group_id)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "500")
            // A worker that dies is replaced within seconds, not 45.
            .set("session.timeout.ms", "10000")
            .create()?;
        let topics = kafka.event_topics();
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names)?;
        let dead_letters = DeadLetters::new(pool, kafka)?;
        Ok(Self {
            consumer,
            handler,
            dead_letters,
            settings,
            wake,
        })
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(group = %self.settings.group_id, "saga consumer started");
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => break,
                message = self.consumer.recv() => message,
            };
            match message {
                Ok(message) => {
                    if !self.process(&message, &shutdown).await {
                        break;
                    }
                    if let Err(error) = self.consumer.store_offset_from_message(&message) {
                        tracing::warn!(%error, "cannot store the offset");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "Kafka receive failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        tracing::info!("saga consumer stopped");
    }

    /// Handles one message until it is done or parked. Returns `false` if
    /// shutdown interrupted it (its offset must not be stored).
    async fn process(&self, message: &BorrowedMessage<'_>, shutdown: &CancellationToken) -> bool {
        let letter = letter_of(message);
        let envelope: EventEnvelope = match serde_json::from_str(&letter.payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                let reason = format!("unparseable envelope: {error}");
                return self.park(&letter, &reason, 1, None, None, shutdown).await;
            }
        };
        let order_id = match route(&envelope) {
            Ok(Some((order_id, _))) => order_id,
            Ok(None) => return true,
            Err(error) => {
                let reason = format!("undecodable event: {error}");
                return self
                    .park(&letter, &reason, 1, Some(envelope.event_id), None, shutdown)
                    .await;
            }
        };
        let mut attempts = 0;
        let mut delay = self.settings.retry_base;
        loop {
            match self.dead_letters.blocker(order_id).await {
                Ok(Some(blocker)) => {
                    let reason = format!("blocked by dead letter #{blocker} of order {order_id}");
                    return self
                        .park(
                            &letter,
                            &reason,
                            0,
                            Some(envelope.event_id),
                            Some(order_id),
                            shutdown,
                        )
                        .await;
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot check for dead letters; retrying"),
            }
            match self.handler.handle(&envelope).await {
                Ok(Handled::Applied { effect_due, .. }) => {
                    if effect_due {
                        self.wake.notify_one();
                    }
                    return true;
                }
                Ok(_) => return true,
                Err(error) if error.is_unavailable() => {
                    tracing::warn!(%error, "database unavailable; waiting");
                }
                Err(error) => {
                    attempts += 1;
                    tracing::warn!(%error, attempts, "saga handler failed");
                    if attempts >= self.settings.max_attempts {
                        let reason = error.to_string();
                        return self
                            .park(
                                &letter,
                                &reason,
                                attempts,
                                Some(envelope.event_id),
                                Some(order_id),
                                shutdown,
                            )
                            .await;
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(self.settings.retry_max);
        }
    }

    /// Parks the message, retrying until it is parked. Returns `false` on shutdown.
    async fn park(
        &self,
        letter: &Letter,
        reason: &str,
        attempts: u32,
        event_id: Option<Uuid>,
        order_id: Option<Uuid>,
        shutdown: &CancellationToken,
    ) -> bool {
        loop {
            match self
                .dead_letters
                .park(letter, reason, attempts, event_id, order_id)
                .await
            {
                Ok(()) => return true,
                Err(error) => {
                    tracing::warn!(%error, "cannot dead-letter the message yet; retrying")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(self.settings.retry_max) => {}
            }
        }
    }
}

fn letter_of(message: &BorrowedMessage<'_>) -> Letter {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    Letter {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(text),
        payload: message.payload().map(text).unwrap_or_default(),
        headers: message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_owned(), h.value.map(text).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}
