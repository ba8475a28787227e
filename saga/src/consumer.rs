//! The Kafka side of the worker: at-least-once consumption, exactly-once
//! effect (the handler dedups by event id in its transaction), offsets
//! stored only after the handler committed, bounded retries, then the
//! dead-letter queue.
//!
//! Messages are spread over lanes by order id ([`crate::lane`]): orders are
//! handled concurrently, each order's messages in the order received. A
//! partition's offset is stored once every message up to it is done
//! ([`OffsetTracker`]); a full lane stops the polling.

use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform::kafka::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::ClientContext;
use sqlx::PgPool;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dead_letter::{DeadLetters, Letter};
use crate::handler::Handler;
use crate::lane::{Job, Lane, Retries};
use crate::offsets::{OffsetTracker, Ticket, TopicPartition};

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
    /// Lanes: orders handled concurrently.
    pub lanes: usize,
    /// Messages a lane handles in one transaction at most.
    pub batch_size: usize,
    /// Messages queued per lane before polling stops.
    pub lane_queue: usize,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            group_id: "saga".into(),
            max_attempts: 5,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            lanes: 8,
            batch_size: 16,
            lane_queue: 64,
        }
    }
}

/// Records the partitions taken from this consumer by rebalances.
pub struct SagaContext {
    revoked: Mutex<Vec<TopicPartition>>,
    group_id: String,
}

impl SagaContext {
    fn new(group_id: &str) -> Self {
        Self {
            revoked: Mutex::default(),
            group_id: group_id.to_owned(),
        }
    }

    fn take_revoked(&self) -> Vec<TopicPartition> {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClientContext for SagaContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        platform::metrics::record_consumer_lag(&self.group_id, &statistics);
    }
}

impl ConsumerContext for SagaContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
            for element in partitions.elements() {
                revoked.push((element.topic().to_owned(), element.partition()));
            }
            tracing::info!(partitions = partitions.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(partitions = partitions.count(), "partitions assigned");
        }
    }
}

/// Consumes the event topics for the saga.
pub struct SagaConsumer {
    consumer: StreamConsumer<SagaContext>,
    handler: Arc<Handler>,
    dead_letters: Arc<DeadLetters>,
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
        let consumer: StreamConsumer<SagaContext> = kafka
            .client_config()
            .set("group.id", &settings.group_id)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "500")
            // A worker that dies is replaced within seconds, not 45.
            .set("session.timeout.ms", "10000")
            .set(
                "statistics.interval.ms",
                platform::metrics::CONSUMER_STATISTICS_INTERVAL_MS,
            )
            .create_with_context(SagaContext::new(&settings.group_id))?;
        let topics = kafka.event_topics();
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names)?;
        let dead_letters = Arc::new(DeadLetters::new(pool, kafka)?);
        Ok(Self {
            consumer,
            handler,
            dead_letters,
            settings,
            wake,
        })
    }

    /// Runs until `shutdown`. Dropping the future (aborting its task) stops
    /// the lanes too, wherever they are.
    pub async fn run(self, shutdown: CancellationToken) {
        let lanes = self.settings.lanes.max(1);
        tracing::info!(group = %self.settings.group_id, lanes, batch = self.settings.batch_size, "saga consumer started");
        let (done, mut finished) = mpsc::unbounded_channel();
        let lane = Lane {
            handler: self.handler.clone(),
            dead_letters: self.dead_letters.clone(),
            retries: Retries {
                max_attempts: self.settings.max_attempts,
                base: self.settings.retry_base,
                max: self.settings.retry_max,
            },
            batch_size: self.settings.batch_size.max(1),
            wake: self.wake.clone(),
            done,
        };
        let mut tasks = JoinSet::new();
        let queues: Vec<mpsc::Sender<Job>> = (0..lanes)
            .map(|_| {
                let (queue, jobs) = mpsc::channel(self.settings.lane_queue.max(1));
                tasks.spawn(lane.clone().run(jobs, shutdown.clone()));
                queue
            })
            .collect();
        drop(lane);
        let mut tracker = OffsetTracker::new();
        'poll: loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => break,
                Some(ticket) = finished.recv() => {
                    self.release(&mut tracker, &ticket);
                    continue;
                }
                message = self.consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, "Kafka receive failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            self.forget_revoked(&mut tracker);
            let ticket = tracker.received(message.topic(), message.partition(), message.offset());
            let (key, job) = Job::classify(letter_of(&message), ticket);
            drop(message);
            let lane = usize::try_from(key % lanes as u128).expect("below the lane count");
            // Backpressure: wait for room in the lane, releasing offsets meanwhile.
            let mut send = pin!(queues[lane].send(job));
            loop {
                tokio::select! {
                    sent = &mut send => {
                        if sent.is_err() {
                            tracing::error!("a saga lane stopped");
                            break 'poll;
                        }
                        break;
                    }
                    Some(ticket) = finished.recv() => self.release(&mut tracker, &ticket),
                    () = shutdown.cancelled() => break 'poll,
                }
            }
        }
        // Let the lanes finish what they are doing, then store what they finished.
        drop(queues);
        while let Some(outcome) = tasks.join_next().await {
            if let Err(error) = outcome {
                tracing::error!(%error, "a saga lane panicked");
            }
        }
        while let Ok(ticket) = finished.try_recv() {
            self.release(&mut tracker, &ticket);
        }
        tracing::info!("saga consumer stopped");
    }

    /// Marks the ticket's message done and stores its partition's offset if
    /// that moved.
    fn release(&self, tracker: &mut OffsetTracker, ticket: &Ticket) {
        self.forget_revoked(tracker);
        if let Some(((topic, partition), offset)) = tracker.done(ticket) {
            if let Err(error) = self.consumer.store_offset(&topic, partition, offset) {
                tracing::warn!(%error, %topic, partition, offset, "cannot store the offset");
            }
        }
    }

    fn forget_revoked(&self, tracker: &mut OffsetTracker) {
        for (topic, partition) in self.consumer.context().take_revoked() {
            tracker.revoke(&topic, partition);
        }
    }
}

fn letter_of(message: &BorrowedMessage<'_>) -> Letter {
    Letter::from_message(message)
}
