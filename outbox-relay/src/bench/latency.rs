//! Commit → Kafka latency at a fixed open-loop rate: writers append one
//! event per transaction on a fixed schedule (whatever the relay does); a
//! consumer notes when each event arrives; per event, arrival − the moment
//! its commit returned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventstore::relay::RelayConfig;
use eventstore::{append, ExpectedVersion, Metadata, NewEvent};
use platform::kafka::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use super::fill::placed_order;
use super::{outbox_rows, Latency, RunningRelay};

type Times = Arc<Mutex<HashMap<Uuid, Instant>>>;

/// Appends `rate` events per second for `duration` (each `OrderPlaced` on
/// a new order stream, one per transaction) with a relay running, and
/// returns the commit → Kafka latency of every event.
pub async fn commit_to_kafka_latency(
    pool: &PgPool,
    kafka: &KafkaConfig,
    relay: &RelayConfig,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<Latency> {
    anyhow::ensure!(rate > 0, "the rate must be positive");
    anyhow::ensure!(outbox_rows(pool).await? == 0, "the outbox must start empty");
    kafka.ensure_topics().await?;
    let consumer = assigned_consumer(kafka)?;
    let running = RunningRelay::start(pool, kafka, relay).await?;

    let committed: Times = Arc::default();
    let received: Times = Arc::default();
    let stop_reading = tokio_util::sync::CancellationToken::new();
    let reader = tokio::spawn(read_arrivals(
        consumer,
        received.clone(),
        stop_reading.clone(),
    ));

    // Warm up: the producer and the consumer learn the new topic's
    // partitions and leaders before the measured events.
    let warm_up = Duration::from_secs(1);
    let warm = write_at_rate(pool, rate.min(100), warm_up, committed.clone()).await?;
    wait_for(&received, warm, Duration::from_secs(30)).await;
    committed.lock().expect("lock").clear();
    received.lock().expect("lock").clear();

    let started = Instant::now();
    let sent = write_at_rate(pool, rate, duration, committed.clone()).await?;
    let writing = started.elapsed();

    wait_for(&received, sent, Duration::from_secs(30)).await;
    stop_reading.cancel();
    reader.await??;
    running.stop().await;

    let committed = committed.lock().expect("lock");
    let received = received.lock().expect("lock");
    let mut samples: Vec<Duration> = committed
        .iter()
        .filter_map(|(id, at)| {
            received
                .get(id)
                .map(|seen| seen.saturating_duration_since(*at))
        })
        .collect();
    anyhow::ensure!(
        samples.len() == sent,
        "{} of {sent} committed events reached Kafka within 30 s",
        samples.len()
    );
    samples.sort();
    Ok(Latency::from_sorted(
        rate,
        sent as f64 / writing.as_secs_f64(),
        &samples,
    ))
}

/// Waits until `count` events arrived or `timeout` passed.
async fn wait_for(received: &Times, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while received.lock().expect("lock").len() < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Appends on a fixed schedule: a task per tick, so a slow append never
/// delays the next one (open loop). Returns how many events committed.
async fn write_at_rate(
    pool: &PgPool,
    rate: u32,
    duration: Duration,
    committed: Times,
) -> anyhow::Result<usize> {
    let total = (f64::from(rate) * duration.as_secs_f64()).round() as usize;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut writers = Vec::with_capacity(total);
    for _ in 0..total {
        ticks.tick().await;
        let (pool, committed) = (pool.clone(), committed.clone());
        writers.push(tokio::spawn(async move {
            let event = NewEvent::from_domain(&placed_order(Uuid::now_v7(), 1));
            let id = event.event_id;
            let mut tx = pool.begin().await?;
            let metadata = Metadata::for_command(Uuid::now_v7());
            let new = ExpectedVersion::Exact(0);
            append(&mut tx, "orders", Uuid::now_v7(), new, &[event], &metadata).await?;
            tx.commit().await?;
            committed.lock().expect("lock").insert(id, Instant::now());
            anyhow::Ok(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    Ok(total)
}

/// A consumer assigned (no group rebalance) to every event partition from the start.
fn assigned_consumer(kafka: &KafkaConfig) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = kafka
        .client_config()
        .set("group.id", format!("relay-bench-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for topic in kafka.event_topics() {
        for partition in 0..kafka.partitions {
            assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

async fn read_arrivals(
    consumer: StreamConsumer,
    received: Times,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            message = consumer.recv() => message?,
        };
        let arrived = Instant::now();
        let event_id = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == "event_id")
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| Uuid::parse_str(v).ok())
        });
        if let Some(id) = event_id {
            received.lock().expect("lock").entry(id).or_insert(arrived);
        }
    }
}
