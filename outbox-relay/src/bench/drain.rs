//! Drain of a pre-filled outbox: the relay starts on a full outbox and is
//! timed until the outbox is empty and every event is in Kafka.

use std::time::{Duration, Instant};

use eventstore::relay::RelayConfig;
use platform::kafka::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sqlx::PgPool;

use super::fill::fill_outbox;
use super::{outbox_rows, RunningRelay, Throughput};

/// Fills the outbox with about `events` events through `eventstore::append`,
/// then starts a relay and times it until the outbox is empty. Fails if the
/// topics do not then hold exactly the appended events.
pub async fn drain(
    pool: &PgPool,
    kafka: &KafkaConfig,
    relay: &RelayConfig,
    events: usize,
) -> anyhow::Result<Throughput> {
    anyhow::ensure!(outbox_rows(pool).await? == 0, "the outbox must start empty");
    kafka.ensure_topics().await?;
    let appended = fill_outbox(pool, events).await?;
    let started = Instant::now();
    let running = RunningRelay::start(pool, kafka, relay).await?;
    loop {
        let empty: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM eventstore.outbox)")
            .fetch_one(pool)
            .await?;
        if empty {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    running.stop().await;
    let in_kafka = messages_in_topics(kafka).await?;
    anyhow::ensure!(
        in_kafka == appended as i64,
        "{appended} events appended but {in_kafka} messages in Kafka"
    );
    Ok(Throughput::new(appended, elapsed))
}

/// Sum of the high watermarks of every event topic's partitions.
pub async fn messages_in_topics(kafka: &KafkaConfig) -> anyhow::Result<i64> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = kafka.client_config().create()?;
        let mut total = 0;
        for topic in kafka.event_topics() {
            for partition in 0..kafka.partitions {
                let (low, high) =
                    consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10))?;
                total += high - low;
            }
        }
        Ok(total)
    })
    .await?
}
