//! The relay alone (`outbox_relay::bench`): drain of a pre-filled outbox, and
//! commit → Kafka latency at a fixed open-loop event rate.

use eventstore::relay::RelayConfig;

use super::{baseline_kafka, Suite};
use crate::env::{BenchDb, BenchKafka};
use crate::results::Value;
use crate::stats::Percentiles;

/// Runs this stage and records its figures.
pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let (events, rate, duration) = (
        suite.sizes.backlog_events,
        suite.sizes.relay_rate,
        suite.sizes.duration,
    );
    let db = BenchDb::create("relay", 16).await?;
    let (drain_kafka, latency_kafka) = (BenchKafka::create().await?, BenchKafka::create().await?);
    let config = RelayConfig::default();
    let drained = outbox_relay::bench::drain(&db.pool, &drain_kafka.config, &config, events).await;
    let latency = match drained {
        Ok(_) => Some(
            outbox_relay::bench::commit_to_kafka_latency(
                &db.pool,
                &latency_kafka.config,
                &config,
                rate,
                duration,
            )
            .await,
        ),
        Err(_) => None,
    };
    drain_kafka.remove().await?;
    latency_kafka.remove().await?;
    db.remove().await?;
    let drained = drained?;
    let latency = latency.expect("measured after a drain")?;
    let results = &mut suite.results;
    let name = format!(
        "relay drain of a pre-filled outbox ({} events)",
        drained.count
    );
    results.against(
        "relay",
        name,
        Value::rate(drained.per_second, "events/s"),
        baseline_kafka::KEY,
    );
    let percentiles = Percentiles {
        count: latency.count,
        p50_ms: latency.p50_ms,
        p95_ms: latency.p95_ms,
        p99_ms: latency.p99_ms,
        max_ms: latency.max_ms,
    };
    let name = format!(
        "commit → Kafka at {rate} events/s open loop (achieved {:.0}/s)",
        latency.achieved_rate
    );
    results.add("relay", name, Value::Latency(percentiles));
    Ok(())
}
