//! The live projector: consumes the event topics and applies each message to
//! the read models in one PostgreSQL transaction.
//!
//! Offsets are stored (and then auto-committed) only after that transaction
//! committed, so a crash between the two redelivers the message, which the
//! version check turns into a no-op. A database failure retries the same
//! message with capped exponential backoff; the consumer never skips ahead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventstore::EventEnvelope;
use platform::kafka::KafkaConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, TopicPartitionList};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::apply::{apply_event, ApplyError};
use crate::projection::{self, Schema};

/// Tuning of the live consumer.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Kafka consumer group; instances in one group split the partitions.
    pub group_id: String,
    /// First wait before retrying a message whose transaction failed.
    pub retry_initial_backoff: Duration,
    /// Longest wait between retries.
    pub retry_max_backoff: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            group_id: "projector".to_owned(),
            retry_initial_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_secs(10),
        }
    }
}

/// Why the consumer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The Kafka consumer could not be created or subscribed.
    #[error("cannot set up the Kafka consumer: {0}")]
    Kafka(#[source] KafkaError),
}

/// Counters of what a consumer did, for logs and tests.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    received: AtomicU64,
    committed: AtomicU64,
    skipped: AtomicU64,
    retries: AtomicU64,
}

impl ConsumerStats {
    /// Messages received from Kafka.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Messages whose transaction committed (including duplicates and
    /// messages no projection is interested in).
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Messages skipped because they can never be applied (undecodable).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Failed attempts that were retried.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

/// Logs partition assignments and publishes the current one.
struct ProjectorContext {
    assignment: watch::Sender<Vec<(String, i32)>>,
}

impl ClientContext for ProjectorContext {}

impl ConsumerContext for ProjectorContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions assigned");
            }
            Rebalance::Revoke(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions revoked");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
        let current = consumer
            .assignment()
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect()
            })
            .unwrap_or_default();
        self.assignment.send_replace(current);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(offsets = %describe(offsets), "offsets committed"),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "offset commit failed"),
        }
    }
}

fn describe(partitions: &TopicPartitionList) -> String {
    let names: Vec<String> = partitions
        .elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect();
    names.join(", ")
}

/// How handling one message ended.
enum Outcome {
    /// Its transaction committed (or it can never apply): store its offset.
    Done,
    /// Shutdown interrupted the retries: leave its offset alone.
    Interrupted,
}

/// A live projector instance: one Kafka consumer in the projector group.
pub struct Consumer {
    consumer: StreamConsumer<ProjectorContext>,
    pool: PgPool,
    settings: ConsumerSettings,
    stats: Arc<ConsumerStats>,
    assignment: watch::Receiver<Vec<(String, i32)>>,
}

impl Consumer {
    /// Creates the consumer and subscribes it to every event topic.
    pub fn new(
        pool: PgPool,
        kafka: &KafkaConfig,
        settings: ConsumerSettings,
    ) -> Result<Self, ConsumerError> {
        let (sender, assignment) = watch::channel(Vec::new());
        let consumer: StreamConsumer<ProjectorContext> = kafka
            .client_config()
            .set("group.id", &settings.group_id)
            // A projector that dies is replaced within seconds, not 45.
            .set("session.timeout.ms", "10000")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .create_with_context(ProjectorContext { assignment: sender })
            .map_err(ConsumerError::Kafka)?;
        let topics = kafka.event_topics();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(ConsumerError::Kafka)?;
        tracing::info!(group_id = %settings.group_id, ?topics, "subscribed");
        Ok(Self {
            consumer,
            pool,
            settings,
            stats: Arc::default(),
            assignment,
        })
    }

    /// The partitions currently assigned to this instance, updated on rebalance.
    pub fn assignment(&self) -> watch::Receiver<Vec<(String, i32)>> {
        self.assignment.clone()
    }

    /// This instance's counters.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        self.stats.clone()
    }

    /// Consumes until `shutdown`, then commits the stored offsets and leaves the group.
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let message = tokio::select! {
                () = shutdown.cancelled() => break,
                message = self.consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, "kafka consumer error");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    }
                }
            };
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            match self.handle(&message, &shutdown).await {
                Outcome::Done => {
                    if let Err(error) = self.consumer.store_offset_from_message(&message) {
                        // The partition was revoked meanwhile; its new owner redelivers.
                        tracing::warn!(%error, "cannot store the offset");
                    }
                }
                Outcome::Interrupted => break,
            }
        }
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "final offset commit failed"),
        }
        let consumer = self.consumer;
        // Closing waits for the group to be left; keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        tracing::info!("projector stopped");
    }

    /// Decodes and applies one message, retrying database failures.
    async fn handle(&self, message: &BorrowedMessage<'_>, shutdown: &CancellationToken) -> Outcome {
        let event: EventEnvelope = match message.payload().map(serde_json::from_slice) {
            Some(Ok(event)) => event,
            Some(Err(error)) => {
                tracing::error!(
                    %error, topic = message.topic(), partition = message.partition(),
                    offset = message.offset(), "skipping a message that is not an event envelope"
                );
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                return Outcome::Done;
            }
            None => {
                tracing::error!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    "skipping a message without a value"
                );
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                return Outcome::Done;
            }
        };
        let mut backoff = self.settings.retry_initial_backoff;
        let mut attempt: u32 = 1;
        loop {
            match project(&self.pool, &event).await {
                Ok(()) => {
                    self.stats.committed.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Done;
                }
                Err(error) if error.is_retryable() => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        %error, attempt, retry_in_ms = backoff.as_millis() as u64,
                        stream_id = %event.stream_id, stream_version = event.stream_version,
                        "cannot apply event; retrying"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => return Outcome::Interrupted,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.settings.retry_max_backoff);
                    attempt = attempt.saturating_add(1);
                }
                Err(error) => {
                    tracing::error!(
                        %error, topic = message.topic(), partition = message.partition(),
                        offset = message.offset(), "skipping an event that cannot be projected"
                    );
                    self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Done;
                }
            }
        }
    }
}

/// Applies `event` to every projection of its stream type in one transaction.
#[tracing::instrument(skip_all, fields(
    event_id = %event.event_id,
    event_type = %event.event_type,
    stream_id = %event.stream_id,
    correlation_id = %event.metadata.correlation_id,
    causation_id = %event.metadata.causation_id,
    trace_id = eventstore::trace::trace_id(event.metadata.traceparent.as_deref()).unwrap_or(""),
))]
pub async fn project(pool: &PgPool, event: &EventEnvelope) -> Result<(), ApplyError> {
    let mut interested = projection::interested_in(&event.stream_type).peekable();
    if interested.peek().is_none() {
        return Ok(());
    }
    let mut tx = pool
        .begin()
        .await
        .map_err(|source| ApplyError::database("starting a transaction", source))?;
    for projection in interested {
        apply_event(&mut tx, Schema::Live, projection, event).await?;
    }
    tx.commit()
        .await
        .map_err(|source| ApplyError::database("committing", source))
}

/// Runs a consumer over `pool` and `kafka` until `shutdown`.
pub async fn consume(
    pool: PgPool,
    kafka: &KafkaConfig,
    settings: ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), ConsumerError> {
    Consumer::new(pool, kafka, settings)?.run(shutdown).await;
    Ok(())
}
