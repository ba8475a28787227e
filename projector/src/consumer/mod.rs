//! The live projector: consumes the event topics and applies them to the
//! read models in batches, one PostgreSQL transaction per partition's share
//! of a batch (partitions in parallel).
//!
//! Offsets are stored (and then auto-committed) only after that transaction
//! committed, so a crash between the two redelivers the messages, which the
//! version check turns into no-ops. A database failure retries the same
//! batch with capped exponential backoff; the consumer never skips ahead.
//! A message that can never apply is isolated: after `max_attempts` tries
//! it is parked as a dead letter ([`crate::dead_letter`]) with the later
//! events of its stream behind it, and the rest of its batch is applied.
//! Nothing is skipped.

mod batch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventstore::EventEnvelope;
use platform::kafka::KafkaConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{ClientContext, TopicPartitionList};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::apply::{apply_batch, ApplyError, Verdict};
use crate::dead_letter::DeadLetters;
use crate::projection::{self, Decoded, Schema};

/// Tuning of the live consumer.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Kafka consumer group; instances in one group split the partitions.
    pub group_id: String,
    /// First wait before retrying a batch whose transaction failed.
    pub retry_initial_backoff: Duration,
    /// Longest wait between retries.
    pub retry_max_backoff: Duration,
    /// Most messages taken from Kafka into one batch.
    pub batch_max_messages: usize,
    /// How long a batch waits for more messages once it has one.
    pub batch_linger: Duration,
    /// Tries at an event that cannot be decoded or applied before it is
    /// parked as a dead letter (at least 1).
    pub max_attempts: u32,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            group_id: "projector".to_owned(),
            retry_initial_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_secs(10),
            batch_max_messages: 2_000,
            batch_linger: Duration::from_millis(2),
            max_attempts: 3,
        }
    }
}

/// Why the consumer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The Kafka consumer (or its dead-letter producer) could not be created, or not subscribed.
    #[error("cannot set up the Kafka consumer: {0}")]
    Kafka(#[source] KafkaError),
}

/// Counters of what a consumer did, for logs and tests.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    received: AtomicU64,
    committed: AtomicU64,
    parked: AtomicU64,
    retries: AtomicU64,
    batches: AtomicU64,
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

    /// Messages parked as dead letters: ones that cannot be decoded or
    /// applied, and the later events of their streams (a redelivered parked
    /// message counts again, though it is parked once).
    pub fn parked(&self) -> u64 {
        self.parked.load(Ordering::Relaxed)
    }

    /// Failed attempts that were retried: batches whose transaction failed,
    /// rounds of retrying events that could not be applied, and parking or
    /// dead-letter checks that failed.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Partition batches committed.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

/// Logs partition assignments and publishes the current one.
struct ProjectorContext {
    assignment: watch::Sender<Vec<(String, i32)>>,
    group_id: String,
}

impl ClientContext for ProjectorContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        platform::metrics::record_consumer_lag(&self.group_id, &statistics);
    }
}

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

/// A live projector instance: one Kafka consumer in the projector group.
pub struct Consumer {
    consumer: StreamConsumer<ProjectorContext>,
    pool: PgPool,
    dead_letters: DeadLetters,
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
            .set(
                "statistics.interval.ms",
                platform::metrics::CONSUMER_STATISTICS_INTERVAL_MS,
            )
            .create_with_context(ProjectorContext {
                assignment: sender,
                group_id: settings.group_id.clone(),
            })
            .map_err(ConsumerError::Kafka)?;
        let topics = kafka.event_topics();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(ConsumerError::Kafka)?;
        tracing::info!(group_id = %settings.group_id, ?topics, "subscribed");
        let dead_letters = DeadLetters::new(pool.clone(), kafka).map_err(ConsumerError::Kafka)?;
        Ok(Self {
            consumer,
            pool,
            dead_letters,
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
        while let Some(deliveries) = self.poll(&shutdown).await {
            if !self.process(deliveries, &shutdown).await {
                break;
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
    if projection::interested_in(&event.stream_type)
        .next()
        .is_none()
    {
        return Ok(());
    }
    let verdicts = project_batch(pool, &[Decoded::from_envelope(event)]).await?;
    match verdicts.into_iter().next() {
        Some(Verdict::Rejected(error)) => Err(error),
        _ => Ok(()),
    }
}

/// Applies `events` to the live read models in one transaction.
pub async fn project_batch(pool: &PgPool, events: &[Decoded]) -> Result<Vec<Verdict>, ApplyError> {
    // While spans are exported: each event's `project` span, in its trace,
    // lasts until the transaction ends.
    let _spans: Vec<tracing::Span> = if platform::otel::enabled() {
        events.iter().map(project_span).collect()
    } else {
        Vec::new()
    };
    let mut tx = pool
        .begin()
        .await
        .map_err(|source| ApplyError::database("starting a transaction", source))?;
    let verdicts = apply_batch(&mut tx, Schema::Live, projection::all(), events).await?;
    tx.commit()
        .await
        .map_err(|source| ApplyError::database("committing", source))?;
    Ok(verdicts)
}

/// A consumer span for projecting `event`, a child of its `traceparent`.
fn project_span(event: &Decoded) -> tracing::Span {
    let span = tracing::info_span!(
        "project",
        otel.kind = "consumer",
        event_id = %event.event_id,
        event_type = %event.event_type,
        stream_id = %event.stream_id,
        stream_version = event.stream_version,
    );
    platform::otel::set_parent(&span, event.traceparent.as_deref());
    span
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
