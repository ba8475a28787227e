//! Baseline (b): a raw rdkafka producer with the relay's settings sending
//! envelope-sized messages without awaiting each (`outbox_relay::bench`).

use super::Suite;
use crate::env::BenchKafka;
use crate::results::Value;

/// Key of this baseline.
pub const KEY: &str = "raw_kafka";

/// Runs this stage and records its figures.
pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let messages = suite.sizes.backlog_events;
    let kafka = BenchKafka::create().await?;
    let measured = outbox_relay::bench::raw_producer(&kafka.config, messages).await;
    kafka.remove().await?;
    let measured = measured?;
    let name = format!(
        "raw producer, relay settings ({} envelopes)",
        measured.count
    );
    suite.results.baseline(
        "baselines",
        KEY,
        name,
        Value::rate(measured.per_second, "records/s"),
    );
    Ok(())
}
