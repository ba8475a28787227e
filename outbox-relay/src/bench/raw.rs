//! The raw baseline: an rdkafka `FutureProducer` with the relay's exact
//! settings sending envelope-sized messages, all enqueued before any
//! acknowledgement is awaited.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use eventstore::relay::{envelope_headers, producer_config};
use eventstore::{EventEnvelope, Metadata};
use platform::kafka::KafkaConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use uuid::Uuid;

use super::fill::order_story;
use super::Throughput;

/// One message as the relay would publish it.
struct Prepared {
    topic: String,
    key: String,
    value: Vec<u8>,
    headers: OwnedHeaders,
}

/// Sends `messages` envelopes (serialized beforehand, so only the producer is
/// timed) and measures from the first send to the last acknowledgement.
pub async fn raw_producer(kafka: &KafkaConfig, messages: usize) -> anyhow::Result<Throughput> {
    let producer: FutureProducer = producer_config(kafka).create()?;
    let prepared = prepare_all(kafka, messages);
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(messages);
    for message in &prepared {
        let mut record = FutureRecord::to(&message.topic)
            .key(&message.key)
            .payload(&message.value)
            .headers(message.headers.clone());
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break deliveries.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
    }
    for delivery in deliveries {
        delivery
            .await?
            .map_err(|(error, _)| anyhow::anyhow!("raw delivery failed: {error}"))?;
    }
    Ok(Throughput::new(messages, started.elapsed()))
}

/// Envelopes of simulated orders (the same mix of events the drain
/// publishes), serialized as the relay would send them.
fn prepare_all(kafka: &KafkaConfig, messages: usize) -> Vec<Prepared> {
    let mut prepared = Vec::with_capacity(messages);
    let mut position = 0;
    let mut versions: HashMap<Uuid, i64> = HashMap::new();
    let product = Uuid::now_v7();
    while prepared.len() < messages {
        for step in order_story(product) {
            for event in step.events {
                position += 1;
                let version = versions.entry(step.stream_id).or_insert(0);
                *version += 1;
                let envelope = EventEnvelope {
                    event_id: event.event_id,
                    stream_id: step.stream_id,
                    stream_type: step.stream_type.to_owned(),
                    stream_version: *version,
                    global_position: position,
                    event_type: event.event_type,
                    schema_version: event.schema_version,
                    recorded_at: Utc::now(),
                    payload: event.payload,
                    metadata: Metadata::for_command(Uuid::now_v7()),
                };
                prepared.push(Prepared {
                    topic: kafka.topic_for(&envelope.stream_type),
                    key: envelope.stream_id.to_string(),
                    value: serde_json::to_vec(&envelope).expect("envelope serializes"),
                    headers: envelope_headers(&envelope),
                });
            }
        }
    }
    prepared.truncate(messages);
    prepared
}
