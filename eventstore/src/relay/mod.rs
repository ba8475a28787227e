//! The outbox relay: publishes appended events to Kafka, in log order, and
//! removes their outbox rows only after the broker acknowledged them.
//!
//! Why nothing is ever skipped: the relay does not track a high-water mark
//! over global positions (which would skip an event whose transaction took
//! an earlier position but committed later). Each read takes the oldest
//! visible outbox rows that are not already in flight, and only delivered
//! rows are deleted; a row that commits late is simply read next time.
//!
//! Pipelined: batches are read and sent while earlier ones are still in
//! flight (every message enqueued without waiting for the previous one);
//! acknowledged batches are deleted with one statement each. An append
//! wakes the relay through `LISTEN/NOTIFY`; it sleeps only when the outbox
//! holds nothing it has not sent.
//!
//! Per-stream order: a stream's version N+1 can only be appended after the
//! transaction holding N committed (the stream row lock), so N is visible in
//! the outbox no later than N+1, has the lower position and is sent first.
//! The producer (see [`producer_config`]) writes each partition (key = stream
//! id) in send order without gaps, and a failure of one message stops it
//! before anything sent after it on that partition is written. After a
//! failure or a timeout only the acknowledged prefix is removed; the relay
//! drops the producer and starts over from the outbox with a new one, so a
//! later event of the stream is re-sent after the failed one.
//!
//! Single-active: the relay that holds a session-level advisory lock is the
//! leader and does all its work on the connection holding the lock; others
//! wait as hot standbys and take over when the lock is released (the
//! leader's connection closes when its process dies), or when the leader
//! stops renewing its lease while its session lives on (a paused process):
//! see the `lease` module for the fencing and why per-stream order
//! survives a fenced leader that resumes.

mod config;
mod failpoint;
mod headers;
mod lease;
mod outbox;
mod pipeline;
mod publish;
mod wake;

use std::sync::Mutex;
use std::time::Duration;

use platform::kafka::KafkaConfig;
use rdkafka::producer::FutureProducer;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

pub use config::{producer_config, RelayConfig};
pub use failpoint::ABORT_AFTER_ACK;
pub use headers::envelope_headers;
pub use pipeline::DeliveryError;

/// Advisory lock key that elects the active relay ("outbox" in ASCII).
pub const LEADER_LOCK_KEY: i64 = 0x6f75_7462_6f78;

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
    /// Another relay took over: this one's lease row names another session.
    #[error("another relay took over the leader lease")]
    LostLease,
    /// A message was refused, failed or not acknowledged in time.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
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
    config: RelayConfig,
    /// A producer made ahead (the first is created by [`Relay::new`], so bad
    /// settings fail there); each leadership or restart after a failure
    /// takes one and drops it at the end.
    spare_producer: Mutex<Option<FutureProducer>>,
    role: tokio::sync::watch::Sender<RelayRole>,
}

impl Relay {
    /// Builds a relay with its producer (see [`producer_config`]).
    pub fn new(pool: PgPool, kafka: KafkaConfig, config: RelayConfig) -> Result<Self, RelayError> {
        let producer = producer_config(&kafka)
            .create()
            .map_err(RelayError::Producer)?;
        let (role, _) = tokio::sync::watch::channel(RelayRole::Standby);
        Ok(Self {
            pool,
            kafka,
            config,
            spare_producer: Mutex::new(Some(producer)),
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

    /// Takes the leader lock if free (or fences a leader whose lease
    /// expired) and publishes until shutdown or a database failure, which
    /// ends the leadership. Returns whether it was the leader.
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
        let lease = Duration::from_millis(self.config.leader_lease_ms);
        let mut locked = lease::take_lead(&mut conn).await?;
        if !locked && lease::fence_stale_leader(&mut conn, lease).await? {
            locked = lease::take_lead(&mut conn).await?;
        }
        if !locked {
            let _ = conn.close().await;
            return Ok(false);
        }
        tracing::info!("became the active relay");
        self.role.send_replace(RelayRole::Leader);
        metrics::gauge!("relay_is_leader").set(1.0);
        let result = self.lead(&mut conn, shutdown).await;
        metrics::gauge!("relay_is_leader").set(0.0);
        if let Err(error) = result {
            tracing::warn!(%error, "stepped down: no longer the active relay");
        }
        // Closing the session releases the advisory lock (after the
        // producer of this leadership was dropped, in `lead`).
        let _ = conn.close().await;
        Ok(true)
    }

    /// Publishes until shutdown; after a delivery failure starts over from
    /// the outbox with a new producer.
    async fn lead(
        &self,
        conn: &mut PgConnection,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        let wake = wake::Wake::listen(&self.pool).await?;
        let backoff = Duration::from_millis(self.config.poll_interval_ms);
        let mut heartbeat =
            lease::Heartbeat::new(Duration::from_millis(self.config.leader_heartbeat_ms));
        while !shutdown.is_cancelled() {
            let producer = self.producer()?;
            let published = publish::publish(
                conn,
                &producer,
                &self.kafka,
                &self.config,
                &wake,
                &mut heartbeat,
                shutdown,
            )
            .await;
            // Dropping the producer purges whatever it still holds.
            drop(producer);
            match published {
                Ok(()) => {}
                Err(RelayError::Delivery(error)) => {
                    tracing::warn!(%error, "delivery failed; starting over from the outbox");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn producer(&self) -> Result<FutureProducer, RelayError> {
        let spare = self.spare_producer.lock().expect("producer lock").take();
        match spare {
            Some(producer) => Ok(producer),
            None => producer_config(&self.kafka)
                .create()
                .map_err(RelayError::Producer),
        }
    }
}
