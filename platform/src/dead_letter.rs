//! Dead-letter plumbing shared by the consumers: a consumed message as it
//! will be parked ([`Letter`]), and the copy each consumer publishes to
//! `<topic>.dlq` with headers saying which consumer gave up on it, why,
//! where it came from and how often it was tried ([`DeadLetterPublisher`]).
//! Each consumer keeps its own table (`saga.dead_letters`,
//! `projector.dead_letters`); several consumers of one topic share its
//! `.dlq` topic and are told apart by `dlq_consumer`.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::kafka::KafkaConfig;

/// Header naming the consumer that dead-lettered the message (`saga`, `projector`).
pub const CONSUMER_HEADER: &str = "dlq_consumer";
/// Header naming why the message was dead-lettered.
pub const REASON_HEADER: &str = "dlq_reason";
/// Header naming the topic the message was read from.
pub const SOURCE_TOPIC_HEADER: &str = "dlq_source_topic";
/// Header naming its partition.
pub const SOURCE_PARTITION_HEADER: &str = "dlq_source_partition";
/// Header naming its offset.
pub const SOURCE_OFFSET_HEADER: &str = "dlq_source_offset";
/// Header counting the attempts made at it.
pub const ATTEMPTS_HEADER: &str = "dlq_attempts";

/// A consumed message, owned, as it will be parked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    /// Topic it was read from.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key (UTF-8, lossily, without NULs).
    pub key: Option<String>,
    /// Value (UTF-8, lossily, without NULs; empty if it had none).
    pub payload: String,
    /// Headers (values UTF-8, lossily, without NULs).
    pub headers: Vec<(String, String)>,
}

impl Letter {
    /// Copies `message`: key, value and header values as UTF-8, lossily,
    /// with NUL characters (which PostgreSQL text and JSON cannot hold)
    /// replaced by U+FFFD, so any message can be parked.
    pub fn from_message(message: &impl Message) -> Self {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).replace('\0', "\u{FFFD}");
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(text),
            payload: message.payload().map(text).unwrap_or_default(),
            headers: message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_owned(), h.value.map(text).unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The value of header `key`, if present.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The headers as a JSON object (for a `headers jsonb` column).
    pub fn headers_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )
    }
}

/// Publishes copies of dead letters to `<topic>.dlq`.
pub struct DeadLetterPublisher {
    producer: FutureProducer,
    consumer: &'static str,
}

impl DeadLetterPublisher {
    /// An idempotent producer (`acks=all`) on `kafka` for the copies of
    /// `consumer`'s dead letters.
    pub fn new(kafka: &KafkaConfig, consumer: &'static str) -> Result<Self, KafkaError> {
        let producer = kafka
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()?;
        Ok(Self { producer, consumer })
    }

    /// Publishes `letter` (key, value and headers as received) to
    /// `<topic>.dlq`, adding the `dlq_*` headers: the consumer, `reason`,
    /// the source topic, partition and offset, and `attempts`. Returns the
    /// topic written to.
    pub async fn publish(
        &self,
        letter: &Letter,
        reason: &str,
        attempts: u32,
    ) -> Result<String, PublishError> {
        let topic = KafkaConfig::dead_letter_topic(&letter.topic);
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let attempts = attempts.to_string();
        let mut headers = OwnedHeaders::new_with_capacity(letter.headers.len() + 6);
        let added = [
            (CONSUMER_HEADER, self.consumer),
            (REASON_HEADER, reason),
            (SOURCE_TOPIC_HEADER, letter.topic.as_str()),
            (SOURCE_PARTITION_HEADER, partition.as_str()),
            (SOURCE_OFFSET_HEADER, offset.as_str()),
            (ATTEMPTS_HEADER, attempts.as_str()),
        ];
        let received = letter.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        for (key, value) in received.chain(added) {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record = FutureRecord::to(&topic)
            .payload(&letter.payload)
            .headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key);
        }
        self.producer
            .send(record, Timeout::After(Duration::from_secs(10)))
            .await
            .map_err(|(source, _)| PublishError {
                topic: topic.clone(),
                source,
            })?;
        Ok(topic)
    }
}

/// A dead letter could not be published.
#[derive(Debug, thiserror::Error)]
#[error("publishing to {topic}: {source}")]
pub struct PublishError {
    /// The dead-letter topic.
    pub topic: String,
    /// What Kafka reported.
    #[source]
    pub source: KafkaError,
}

#[cfg(test)]
mod tests {
    use rdkafka::message::{OwnedMessage, Timestamp};

    use super::*;

    #[test]
    fn any_bytes_become_text_postgres_can_store() {
        let headers = OwnedHeaders::new().insert(Header {
            key: "event_id",
            value: Some(&b"a\0b"[..]),
        });
        let message = OwnedMessage::new(
            Some(b"\x00\xff{".to_vec()),
            Some(b"k\0".to_vec()),
            "t".to_owned(),
            Timestamp::NotAvailable,
            2,
            7,
            Some(headers),
        );
        let letter = Letter::from_message(&message);
        assert_eq!(letter.payload, "\u{FFFD}\u{FFFD}{");
        assert_eq!(letter.key.as_deref(), Some("k\u{FFFD}"));
        assert_eq!(letter.header("event_id"), Some("a\u{FFFD}b"));
        assert_eq!(
            (letter.topic.as_str(), letter.partition, letter.offset),
            ("t", 2, 7)
        );
        assert!(!letter.headers_json().to_string().contains("\\u0000"));
    }
}

/// The dead-letter subcommands of a consumer's binary (`saga-worker
/// dead-letters …`, `projector dead-letters …`).
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum DeadLetterCommand {
    /// List dead letters, oldest first (parked ones by default).
    List {
        /// Include the ones already re-driven.
        #[arg(long)]
        all: bool,
    },
    /// Show one dead letter in full, as JSON.
    Show {
        /// Its id.
        id: i64,
    },
    /// Process parked dead letters again, oldest first, through the
    /// consumer's own path; each that succeeds is marked re-driven, one
    /// that fails again stays parked and holds back the later letters of
    /// its order (saga) or stream (projector).
    Redrive {
        /// A dead letter: re-driven with the other parked letters of its
        /// order or stream.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Re-drive every parked dead letter.
        #[arg(long)]
        all: bool,
    },
}
