//! Kafka connection settings, topic naming and idempotent topic creation.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// Default brokers: the single-node broker that `make infra-up` starts.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// The stream types of the system; each has its own topic.
pub const STREAM_TYPES: [&str; 3] = ["orders", "inventory", "payments"];

/// How a process reaches Kafka and which topics it uses.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaConfig {
    /// Comma-separated bootstrap brokers.
    #[arg(long = "kafka-brokers", env = "KAFKA_BROKERS", default_value = DEFAULT_BROKERS)]
    pub brokers: String,
    /// Prefix of every topic name (tests use a unique one each).
    #[arg(
        long = "kafka-topic-prefix",
        env = "KAFKA_TOPIC_PREFIX",
        default_value = ""
    )]
    pub topic_prefix: String,
    /// Partitions of each topic when it is created.
    #[arg(
        long = "kafka-partitions",
        env = "KAFKA_PARTITIONS",
        default_value_t = 3
    )]
    pub partitions: i32,
}

impl KafkaConfig {
    /// A configuration for `brokers` and `topic_prefix` with default partitions.
    pub fn new(brokers: impl Into<String>, topic_prefix: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic_prefix: topic_prefix.into(),
            partitions: 3,
        }
    }

    /// The topic carrying the events of `stream_type`.
    pub fn topic_for(&self, stream_type: &str) -> String {
        format!("{}{}", self.topic_prefix, stream_type)
    }

    /// The topics of every stream type.
    pub fn event_topics(&self) -> Vec<String> {
        STREAM_TYPES.iter().map(|t| self.topic_for(t)).collect()
    }

    /// The dead-letter topic of `topic`.
    pub fn dead_letter_topic(topic: &str) -> String {
        format!("{topic}.dlq")
    }

    /// Base client configuration (brokers and sane timeouts).
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("socket.timeout.ms", "10000")
            .set("broker.address.family", "v4");
        config
    }

    /// Creates the event topics (and their dead-letter topics) if they do
    /// not exist yet. Idempotent.
    pub async fn ensure_topics(&self) -> Result<(), KafkaSetupError> {
        let mut names = self.event_topics();
        names.extend(
            self.event_topics()
                .iter()
                .map(|t| Self::dead_letter_topic(t)),
        );
        self.create_topics(&names).await
    }

    /// Like [`Self::ensure_topics`], but keeps retrying (every 2 s) while the
    /// broker is unreachable, so a process may start before Kafka. Returns
    /// `false` if `shutdown` was cancelled first.
    pub async fn ensure_topics_when_available(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> bool {
        loop {
            match self.ensure_topics().await {
                Ok(()) => return true,
                Err(error) => tracing::warn!(%error, "Kafka not ready; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    /// Creates `names` with the configured partition count unless they exist.
    pub async fn create_topics(&self, names: &[String]) -> Result<(), KafkaSetupError> {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .map_err(KafkaSetupError::Client)?;
        let topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|name| NewTopic::new(name, self.partitions, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        let results = admin
            .create_topics(&topics, &options)
            .await
            .map_err(KafkaSetupError::Client)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(KafkaSetupError::CreateTopic { topic, code }),
            }
        }
        Ok(())
    }
}

/// Failure while preparing Kafka.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// The client could not be created or the request failed.
    #[error("kafka admin request failed: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
    /// The broker refused to create a topic.
    #[error("cannot create topic {topic}: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
}
