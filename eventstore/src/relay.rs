//! The outbox relay: publishes appended events to Kafka, in log order, and
//! removes their outbox rows only after the broker acknowledged them.
//!
//! Why nothing is ever skipped: the relay does not track a high-water mark
//! over global positions (which would skip an event whose transaction took
//! an earlier position but committed later). It publishes whatever outbox
//! rows are visible, oldest first, and deletes exactly the delivered ones;
//! a row that commits late is simply still there on the next poll.
//!
//! Per-stream order: a stream's version N+1 can only be appended after the
//! transaction holding version N committed (the stream row lock), so N is
//! visible in the outbox no later than N+1 and has the lower position. The
//! idempotent producer keeps that order within the partition (key = stream id).
//! After a delivery failure only the prefix before the first failed event
//! is removed, so a later event of the stream is re-sent after the failed one.
//!
//! Single-active: the relay that holds a session-level advisory lock is the
//! leader and does all its work on the connection holding the lock; others
//! wait as hot standbys and take over when the lock is released (the
//! leader's connection closes when its process dies).

use std::time::Duration;

use platform::kafka::KafkaConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::envelope::EventEnvelope;
use crate::store::OUTBOX_CHANNEL;

/// Advisory lock key that elects the active relay ("outbox" in ASCII).
pub const LEADER_LOCK_KEY: i64 = 0x6f75_7462_6f78;

/// Tuning of the relay.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayConfig {
    /// Outbox rows published per batch.
    #[arg(long = "batch-size", env = "RELAY_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: i64,
    /// Longest wait between outbox polls when no notification arrives (ms).
    #[arg(
        long = "poll-interval-ms",
        env = "RELAY_POLL_INTERVAL_MS",
        default_value_t = 500
    )]
    pub poll_interval_ms: u64,
    /// How often a standby tries to become the leader (ms).
    #[arg(
        long = "standby-retry-ms",
        env = "RELAY_STANDBY_RETRY_MS",
        default_value_t = 1000
    )]
    pub standby_retry_ms: u64,
    /// How long the broker may take to acknowledge a message before it counts as failed (ms).
    #[arg(
        long = "delivery-timeout-ms",
        env = "RELAY_DELIVERY_TIMEOUT_MS",
        default_value_t = 30000
    )]
    pub delivery_timeout_ms: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval_ms: 500,
            standby_retry_ms: 1000,
            delivery_timeout_ms: 30000,
        }
    }
}

/// Why the relay stopped or a round failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// PostgreSQL failed.
    #[error("outbox database error while {action}: {source}")]
    Database {
        /// What the relay was doing.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// The Kafka producer could not be created.
    #[error("cannot create the Kafka producer: {0}")]
    Producer(#[source] rdkafka::error::KafkaError),
}

/// Role of this relay instance, reported for observability and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayRole {
    /// Waiting for the leader lock.
    Standby,
    /// Holding the lock and publishing.
    Leader,
}

/// Publishes the outbox to Kafka while it is the elected leader.
pub struct Relay {
    pool: PgPool,
    kafka: KafkaConfig,
    producer: FutureProducer,
    config: RelayConfig,
    role: tokio::sync::watch::Sender<RelayRole>,
}

impl Relay {
    /// Builds a relay with an idempotent producer (acks=all, ordered retries).
    pub fn new(pool: PgPool, kafka: KafkaConfig, config: RelayConfig) -> Result<Self, RelayError> {
        let producer: FutureProducer = producer_config(&kafka, &config)
            .create()
            .map_err(RelayError::Producer)?;
        let (role, _) = tokio::sync::watch::channel(RelayRole::Standby);
        Ok(Self {
            pool,
            kafka,
            producer,
            config,
            role,
        })
    }

    /// Watches this instance's role.
    pub fn role(&self) -> tokio::sync::watch::Receiver<RelayRole> {
        self.role.subscribe()
    }

    /// Runs until `shutdown`: waits to become leader, then publishes; goes
    /// back to standby if its database connection fails.
    pub async fn run(&self, shutdown: CancellationToken) {
        let retry = Duration::from_millis(self.config.standby_retry_ms);
        let mut announced_standby = false;
        while !shutdown.is_cancelled() {
            match self.try_lead(&shutdown).await {
                Ok(true) => announced_standby = false,
                Ok(false) => {
                    if !announced_standby {
                        tracing::info!("another relay is active; waiting as hot standby");
                        announced_standby = true;
                    }
                }
                Err(error) => tracing::warn!(%error, "relay round failed; retrying"),
            }
            self.role.send_replace(RelayRole::Standby);
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(retry) => {}
            }
        }
        tracing::info!("relay stopped");
    }

    /// Takes the leader lock if free and publishes until shutdown or a
    /// database failure. Returns whether it was the leader.
    async fn try_lead(&self, shutdown: &CancellationToken) -> Result<bool, RelayError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|source| RelayError::Database {
                action: "connecting",
                source,
            })?
            .detach();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK_KEY)
            .fetch_one(&mut conn)
            .await
            .map_err(|source| RelayError::Database {
                action: "taking the leader lock",
                source,
            })?;
        if !locked {
            let _ = conn.close().await;
            return Ok(false);
        }
        tracing::info!("became the active relay");
        self.role.send_replace(RelayRole::Leader);
        let result = self.lead(&mut conn, shutdown).await;
        // Closing the session releases the advisory lock.
        let _ = conn.close().await;
        result.map(|()| true)
    }

    async fn lead(
        &self,
        conn: &mut PgConnection,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(|source| RelayError::Database {
                action: "listening for appends",
                source,
            })?;
        listener
            .listen(OUTBOX_CHANNEL)
            .await
            .map_err(|source| RelayError::Database {
                action: "listening for appends",
                source,
            })?;
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        while !shutdown.is_cancelled() {
            let published = self.publish_batch(conn).await?;
            if published >= self.config.batch_size as usize {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = tokio::time::sleep(poll) => {}
                notification = listener.recv() => {
                    if let Err(error) = notification {
                        tracing::warn!(%error, "lost the append notifications; polling");
                    }
                }
            }
        }
        Ok(())
    }

    /// Publishes the oldest visible outbox rows and deletes the delivered
    /// prefix. Returns how many rows were delivered and removed.
    #[tracing::instrument(skip_all)]
    pub async fn publish_batch(&self, conn: &mut PgConnection) -> Result<usize, RelayError> {
        let batch: Vec<EventEnvelope> = sqlx::query_as(
            "SELECT e.event_id, e.stream_id, e.stream_type, e.stream_version, e.global_position,
                    e.event_type, e.schema_version, e.recorded_at, e.payload, e.metadata
             FROM eventstore.outbox o JOIN eventstore.events e USING (global_position)
             ORDER BY o.global_position LIMIT $1",
        )
        .bind(self.config.batch_size)
        .fetch_all(&mut *conn)
        .await
        .map_err(|source| RelayError::Database {
            action: "reading the outbox",
            source,
        })?;
        if batch.is_empty() {
            return Ok(0);
        }
        let delivered = self.deliver(&batch).await;
        if delivered.is_empty() {
            return Ok(0);
        }
        sqlx::query("DELETE FROM eventstore.outbox WHERE global_position = ANY($1)")
            .bind(&delivered)
            .execute(&mut *conn)
            .await
            .map_err(|source| RelayError::Database {
                action: "removing delivered outbox rows",
                source,
            })?;
        tracing::debug!(count = delivered.len(), "published events");
        Ok(delivered.len())
    }

    /// Sends the batch and returns the positions of the delivered prefix
    /// (everything before the first failure, in log order).
    async fn deliver(&self, batch: &[EventEnvelope]) -> Vec<i64> {
        let mut pending = Vec::with_capacity(batch.len());
        for event in batch {
            let topic = self.kafka.topic_for(&event.stream_type);
            let value = serde_json::to_vec(event).expect("envelope serializes");
            let key = event.stream_id.to_string();
            let mut record = FutureRecord::to(&topic)
                .key(&key)
                .payload(&value)
                .headers(envelope_headers(event));
            // Enqueue without waiting for acknowledgement; back off while the
            // producer's queue is full.
            let delivery = loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => break Ok(delivery),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((error, _)) => break Err(error),
                }
            };
            let refused = delivery.is_err();
            pending.push((event.global_position, delivery));
            if refused {
                // Keep per-stream order: send nothing after an event that could not be queued.
                break;
            }
        }
        let mut delivered = Vec::with_capacity(batch.len());
        let mut failed = false;
        for (position, delivery) in pending {
            let outcome = match delivery {
                Ok(future) => match future.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((error, _))) => Err(error.to_string()),
                    Err(_) => Err("the producer dropped the message".to_owned()),
                },
                Err(error) => Err(error.to_string()),
            };
            match outcome {
                Ok(()) if !failed => delivered.push(position),
                Ok(()) => {}
                Err(error) => {
                    if !failed {
                        tracing::warn!(%error, position, "delivery failed; will retry from here");
                    }
                    failed = true;
                }
            }
        }
        delivered
    }
}

/// The producer settings the relay publishes with (idempotent, acks=all,
/// ordered retries); the benchmark's raw baseline uses the same.
pub fn producer_config(kafka: &KafkaConfig, config: &RelayConfig) -> rdkafka::ClientConfig {
    let mut client = kafka.client_config();
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", config.delivery_timeout_ms.to_string());
    client
}

/// The envelope's ids as Kafka headers, so consumers can route and trace
/// without parsing the value.
pub fn envelope_headers(event: &EventEnvelope) -> OwnedHeaders {
    let event_id = event.event_id.to_string();
    let stream_id = event.stream_id.to_string();
    let version = event.stream_version.to_string();
    let position = event.global_position.to_string();
    let correlation = event.metadata.correlation_id.to_string();
    let causation = event.metadata.causation_id.to_string();
    let mut headers = OwnedHeaders::new()
        .insert(header("event_id", &event_id))
        .insert(header("event_type", &event.event_type))
        .insert(header("stream_id", &stream_id))
        .insert(header("stream_type", &event.stream_type))
        .insert(header("stream_version", &version))
        .insert(header("global_position", &position))
        .insert(header("correlation_id", &correlation))
        .insert(header("causation_id", &causation));
    if let Some(traceparent) = &event.metadata.traceparent {
        headers = headers.insert(header("traceparent", traceparent));
    }
    headers
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
