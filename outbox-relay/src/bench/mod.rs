//! The relay measured alone against the real Postgres and Kafka, with a raw
//! producer baseline in the same run:
//!
//! - [`raw_producer`]: an rdkafka producer with the relay's settings → records/s;
//! - [`drain`]: the relay emptying a pre-filled outbox → events/s;
//! - [`commit_to_kafka_latency`]: commit → Kafka at a fixed open-loop rate.
//!
//! [`run`] does all three on one database (which must be migrated, have an
//! empty outbox and no other relay) under per-phase topic prefixes.

mod drain;
mod fill;
mod latency;
mod raw;

use std::fmt;
use std::time::Duration;

use eventstore::relay::{Relay, RelayConfig, RelayRole};
use platform::kafka::KafkaConfig;
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use drain::{drain, messages_in_topics};
pub use fill::fill_outbox;
pub use latency::commit_to_kafka_latency;
pub use raw::raw_producer;

/// What to measure.
#[derive(Debug, Clone)]
pub struct RelayBenchConfig {
    /// Messages of the raw baseline and events of the drain.
    pub events: usize,
    /// Events per second of the latency phase.
    pub latency_rate: u32,
    /// Length of the latency phase.
    pub latency_duration: Duration,
    /// The relay's settings (the raw baseline uses its producer settings).
    pub relay: RelayConfig,
}

impl Default for RelayBenchConfig {
    fn default() -> Self {
        Self {
            events: 100_000,
            latency_rate: 1000,
            latency_duration: Duration::from_secs(10),
            relay: RelayConfig::default(),
        }
    }
}

/// A count over a duration.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Throughput {
    /// Messages or events.
    pub count: usize,
    /// Seconds taken.
    pub seconds: f64,
    /// `count / seconds`.
    pub per_second: f64,
}

impl Throughput {
    /// `count` in `elapsed`.
    pub fn new(count: usize, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self {
            count,
            seconds,
            per_second: count as f64 / seconds.max(f64::EPSILON),
        }
    }
}

/// Commit → Kafka latency percentiles (milliseconds).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Events per second asked for.
    pub target_rate: u32,
    /// Events per second the writers achieved.
    pub achieved_rate: f64,
    /// Events measured.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles of `sorted` (ascending, not empty).
    pub fn from_sorted(target_rate: u32, achieved_rate: f64, sorted: &[Duration]) -> Self {
        let at = |q: f64| {
            let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[index].as_secs_f64() * 1000.0
        };
        Self {
            target_rate,
            achieved_rate,
            count: sorted.len(),
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// Every figure of one run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RelayBenchReport {
    /// Raw producer baseline.
    pub raw_producer: Throughput,
    /// Relay drain of a pre-filled outbox.
    pub drain: Throughput,
    /// `drain / raw_producer`.
    pub drain_ratio: f64,
    /// Commit → Kafka at a fixed rate.
    pub latency: Latency,
}

impl fmt::Display for RelayBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (raw, drain, l) = (&self.raw_producer, &self.drain, &self.latency);
        writeln!(
            f,
            "{:<44} {:>14} {:>16} {:>7}",
            "figure", "value", "baseline", "ratio"
        )?;
        writeln!(
            f,
            "{:<44} {:>10.0} ev/s {:>12.0} rec/s {:>7.2}",
            format!("relay drain of {} events", drain.count),
            drain.per_second,
            raw.per_second,
            self.drain_ratio
        )?;
        writeln!(
            f,
            "{:<44} p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            format!(
                "commit → Kafka at {}/s (achieved {:.0}/s, n={})",
                l.target_rate, l.achieved_rate, l.count
            ),
            l.p50_ms,
            l.p95_ms,
            l.p99_ms,
            l.max_ms
        )
    }
}

/// Runs the raw baseline, the drain and the latency phase, in that order.
pub async fn run(
    pool: &PgPool,
    kafka: &KafkaConfig,
    config: &RelayBenchConfig,
) -> anyhow::Result<RelayBenchReport> {
    let phase = |name: &str| {
        let mut phase = kafka.clone();
        phase.topic_prefix = format!("{}{name}.", kafka.topic_prefix);
        phase
    };
    let raw_kafka = phase("raw");
    raw_kafka.ensure_topics().await?;
    let raw_producer = raw_producer(&raw_kafka, config.events).await?;
    let drain = drain(pool, &phase("drain"), &config.relay, config.events).await?;
    let latency = commit_to_kafka_latency(
        pool,
        &phase("latency"),
        &config.relay,
        config.latency_rate,
        config.latency_duration,
    )
    .await?;
    Ok(RelayBenchReport {
        raw_producer,
        drain,
        drain_ratio: drain.per_second / raw_producer.per_second,
        latency,
    })
}

/// Rows in the outbox.
async fn outbox_rows(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM eventstore.outbox")
        .fetch_one(pool)
        .await
}

/// A relay running in the background until stopped.
struct RunningRelay {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningRelay {
    /// Starts a relay and waits until it holds the leader lock.
    async fn start(
        pool: &PgPool,
        kafka: &KafkaConfig,
        config: &RelayConfig,
    ) -> anyhow::Result<Self> {
        let relay = Relay::new(pool.clone(), kafka.clone(), config.clone())?;
        let mut role = relay.role();
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { relay.run(stop).await }
        });
        tokio::time::timeout(
            Duration::from_secs(30),
            role.wait_for(|r| *r == RelayRole::Leader),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!("the relay did not become leader (another relay on this database?)")
        })??;
        Ok(Self { stop, task })
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
