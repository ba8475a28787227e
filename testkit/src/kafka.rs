//! Kafka isolation and inspection for tests.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use platform::kafka::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use uuid::Uuid;

/// The brokers: `KAFKA_BROKERS`, or the `make infra-up` default.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| platform::kafka::DEFAULT_BROKERS.to_owned())
}

/// A unique topic prefix for one test, with its topics created.
pub struct TestKafka {
    /// Configuration to hand to the processes under test.
    pub config: KafkaConfig,
}

impl TestKafka {
    /// Creates the event and dead-letter topics under a fresh prefix.
    pub async fn create() -> Self {
        let prefix = format!("test-{}.", Uuid::new_v4().simple());
        let config = KafkaConfig::new(brokers(), prefix);
        config.ensure_topics().await.unwrap_or_else(|e| {
            panic!(
                "cannot create topics on {}: {e} (run `make infra-up`)",
                brokers()
            )
        });
        Self { config }
    }

    /// A probe reading `stream_type`'s topic from the beginning.
    pub fn probe(&self, stream_types: &[&str]) -> KafkaProbe {
        let topics: Vec<String> = stream_types
            .iter()
            .map(|t| self.config.topic_for(t))
            .collect();
        KafkaProbe::new(&self.config, &topics)
    }
}

/// One consumed record, owned and decoded for assertions.
#[derive(Debug, Clone)]
pub struct Record {
    /// Topic it was read from.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Key as UTF-8.
    pub key: String,
    /// Value parsed as JSON (a JSON string holding the raw text if it is not JSON).
    pub value: serde_json::Value,
    /// Headers as UTF-8.
    pub headers: HashMap<String, String>,
}

/// Reads topics from the beginning with a throw-away consumer group.
pub struct KafkaProbe {
    consumer: StreamConsumer,
}

impl KafkaProbe {
    /// Subscribes a fresh group to `topics`.
    pub fn new(config: &KafkaConfig, topics: &[String]) -> Self {
        let consumer: StreamConsumer = config
            .client_config()
            .set("group.id", format!("probe-{}", Uuid::new_v4()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("create probe consumer");
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).expect("subscribe probe");
        Self { consumer }
    }

    /// Reads until `count` records arrived or `timeout` passed.
    pub async fn read(&self, count: usize, timeout: Duration) -> Vec<Record> {
        let deadline = Instant::now() + timeout;
        let mut records = Vec::new();
        while records.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.consumer.recv()).await {
                Ok(Ok(message)) => records.push(to_record(&message)),
                Ok(Err(error)) => panic!("probe consumer failed: {error}"),
                Err(_) => break,
            }
        }
        records
    }

    /// Reads for `quiet` after the last record (to prove nothing more comes).
    pub async fn read_until_quiet(&self, quiet: Duration) -> Vec<Record> {
        let mut records = Vec::new();
        while let Ok(Ok(message)) = tokio::time::timeout(quiet, self.consumer.recv()).await {
            records.push(to_record(&message));
        }
        records
    }
}

fn to_record(message: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    let value = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                    (h.key.to_owned(), value.unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        // JSON values parsed; anything else (e.g. a poison message) as a string.
        value: message
            .payload()
            .map(|p| {
                serde_json::from_slice(p).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(p).into_owned())
                })
            })
            .unwrap_or(serde_json::Value::Null),
        headers,
    }
}
