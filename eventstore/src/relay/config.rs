//! The relay's tuning and the producer settings it publishes with.

use platform::kafka::KafkaConfig;

/// Tuning of the relay.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayConfig {
    /// Outbox rows read and sent per batch.
    #[arg(long = "batch-size", env = "RELAY_BATCH_SIZE", default_value_t = 1000)]
    pub batch_size: i64,
    /// Batches sent to Kafka and not yet acknowledged at once (reads go on
    /// while earlier batches are in flight).
    #[arg(
        long = "max-in-flight-batches",
        env = "RELAY_MAX_IN_FLIGHT_BATCHES",
        default_value_t = 8
    )]
    pub max_in_flight_batches: usize,
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
    /// How long the broker may take to acknowledge the oldest message in
    /// flight before the relay gives up on its producer and starts over (ms).
    #[arg(
        long = "delivery-timeout-ms",
        env = "RELAY_DELIVERY_TIMEOUT_MS",
        default_value_t = 30000
    )]
    pub delivery_timeout_ms: u64,
    /// How often the leader refreshes its heartbeat in the database (ms).
    #[arg(
        long = "leader-heartbeat-ms",
        env = "RELAY_LEADER_HEARTBEAT_MS",
        default_value_t = 1000
    )]
    pub leader_heartbeat_ms: u64,
    /// How old the leader's heartbeat may get before a standby terminates
    /// the leader's database session and takes over (ms): a leader paused
    /// longer than this is fenced. Keep it several heartbeats long.
    #[arg(
        long = "leader-lease-ms",
        env = "RELAY_LEADER_LEASE_MS",
        default_value_t = 10000
    )]
    pub leader_lease_ms: u64,
    /// Fault injection for chaos runs: the probability, in [0, 1], that the
    /// process aborts after a batch's acknowledgements and before its
    /// outbox rows are deleted, logging "failpoint relay.abort_after_ack
    /// fired" first (0, the default: never).
    #[arg(
        long = "failpoint-abort-after-ack",
        env = "RELAY_FAILPOINT_ABORT_AFTER_ACK",
        default_value_t = 0.0,
        value_parser = super::failpoint::parse_probability
    )]
    pub failpoint_abort_after_ack: f64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            max_in_flight_batches: 8,
            poll_interval_ms: 500,
            standby_retry_ms: 1000,
            delivery_timeout_ms: 30000,
            leader_heartbeat_ms: 1000,
            leader_lease_ms: 10000,
            failpoint_abort_after_ack: 0.0,
        }
    }
}

impl RelayConfig {
    /// Rows per batch, at least one.
    pub(super) fn batch_rows(&self) -> usize {
        usize::try_from(self.batch_size).unwrap_or(1).max(1)
    }

    /// Batches in flight, at least one.
    pub(super) fn window(&self) -> usize {
        self.max_in_flight_batches.max(1)
    }
}

/// The producer settings the relay publishes with; the benchmark's raw
/// baseline uses the same.
///
/// Idempotent with acks=all, so within one producer the broker writes each
/// partition's messages in send order without gaps. librdkafka itself never
/// times a message out (`message.timeout.ms` = 0, infinite) and stops the
/// producer on any error that could leave a gap (`enable.gapless.guarantee`):
/// a message can then only fail together with everything sent after it on
/// its partition, so no later event of a stream is written without the
/// earlier ones. The relay enforces `delivery_timeout_ms` itself by dropping
/// the producer and starting over from the outbox.
pub fn producer_config(kafka: &KafkaConfig) -> rdkafka::ClientConfig {
    let mut client = kafka.client_config();
    client
        .set("enable.idempotence", "true")
        .set("enable.gapless.guarantee", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "0");
    client
}
