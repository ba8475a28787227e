//! Batches sent to Kafka and not yet acknowledged, oldest first.
//!
//! Every message of a batch is enqueued without waiting for the previous
//! one, and further batches are sent while earlier ones are in flight.
//! Acknowledgements are taken in send order: a batch is complete when all
//! its messages are acknowledged, and only complete batches (or, after a
//! failure, the acknowledged prefix of the oldest batch) leave the outbox.
//! On a failure or a timeout nothing sent after the failed message is
//! removed, and the caller drops the producer and starts over from the
//! outbox; see [`super::producer_config`] for why no later event of a
//! stream can have been written without the earlier ones.
//!
//! While spans are exported, each message has a `publish` span from its
//! enqueueing to its acknowledgement, a child of its event's `traceparent`;
//! otherwise no span is made (nothing is allocated per event for tracing).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use platform::kafka::KafkaConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::time::Instant;

use super::headers::{headers, HeaderIds};
use super::outbox::Outgoing;

/// Why the relay stopped trusting its producer.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The producer refused to enqueue a message.
    #[error("the producer refused the event at position {position}: {source}")]
    Refused {
        /// The event's position.
        position: i64,
        /// Why.
        #[source]
        source: KafkaError,
    },
    /// The broker did not acknowledge a message.
    #[error("delivery of the event at position {position} failed: {reason}")]
    Failed {
        /// The event's position.
        position: i64,
        /// Why.
        reason: String,
    },
    /// The oldest message in flight was not acknowledged in time.
    #[error("no acknowledgement for the event at position {position} within {timeout:?}")]
    TimedOut {
        /// The event's position.
        position: i64,
        /// The delivery timeout.
        timeout: Duration,
    },
}

/// The outcome of waiting on the oldest batch.
pub(super) enum Acked {
    /// Every message of the batch was acknowledged: its positions.
    Batch(Vec<i64>),
    /// A message failed: the positions acknowledged before it, and why.
    Failed(Vec<i64>, DeliveryError),
}

struct InFlight {
    positions: Vec<i64>,
    /// The topic of each position, for the published-events metric.
    topics: Vec<String>,
    deliveries: VecDeque<DeliveryFuture>,
    /// The `publish` span of each delivery while spans are exported (else empty).
    spans: VecDeque<tracing::Span>,
    sent_at: Instant,
}

/// The in-flight window of one producer.
pub(super) struct Pipeline<'a> {
    producer: &'a FutureProducer,
    kafka: &'a KafkaConfig,
    timeout: Duration,
    window: VecDeque<InFlight>,
    in_flight: HashSet<i64>,
}

impl<'a> Pipeline<'a> {
    pub(super) fn new(
        producer: &'a FutureProducer,
        kafka: &'a KafkaConfig,
        timeout: Duration,
    ) -> Self {
        Self {
            producer,
            kafka,
            timeout,
            window: VecDeque::new(),
            in_flight: HashSet::new(),
        }
    }

    /// Positions sent and not yet acknowledged.
    pub(super) fn in_flight(&self) -> &HashSet<i64> {
        &self.in_flight
    }

    /// Batches in flight.
    pub(super) fn batches(&self) -> usize {
        self.window.len()
    }

    /// Enqueues every event of `batch` in order. If the producer refuses
    /// one, nothing after it is enqueued and the refusal is returned (the
    /// events before it stay in flight).
    pub(super) async fn send(&mut self, batch: &[Outgoing]) -> Result<(), DeliveryError> {
        let mut sent = InFlight {
            positions: Vec::with_capacity(batch.len()),
            topics: Vec::with_capacity(batch.len()),
            deliveries: VecDeque::with_capacity(batch.len()),
            spans: VecDeque::new(),
            sent_at: Instant::now(),
        };
        let traced = platform::otel::enabled();
        let mut refused = None;
        for event in batch {
            let topic = self.kafka.topic_for(&event.stream_type);
            let span = traced.then(|| publish_span(&topic, event));
            match self.enqueue(&topic, event).await {
                Ok(delivery) => {
                    sent.positions.push(event.global_position);
                    sent.topics.push(topic);
                    sent.deliveries.push_back(delivery);
                    sent.spans.extend(span);
                }
                Err(source) => {
                    if let Some(span) = span {
                        span.record("otel.status_code", "ERROR");
                    }
                    refused = Some(DeliveryError::Refused {
                        position: event.global_position,
                        source,
                    });
                    break;
                }
            }
        }
        if !sent.positions.is_empty() {
            self.in_flight.extend(&sent.positions);
            self.window.push_back(sent);
        }
        refused.map_or(Ok(()), Err)
    }

    async fn enqueue(&self, topic: &str, event: &Outgoing) -> Result<DeliveryFuture, KafkaError> {
        let (event_id, key) = (event.event_id.to_string(), event.stream_id.to_string());
        let (version, position) = (
            event.stream_version.to_string(),
            event.global_position.to_string(),
        );
        let headers = headers(&HeaderIds {
            event_id: &event_id,
            event_type: &event.event_type,
            stream_id: &key,
            stream_type: &event.stream_type,
            stream_version: &version,
            global_position: &position,
            correlation_id: &event.correlation_id,
            causation_id: &event.causation_id,
            traceparent: event.traceparent.as_deref(),
        });
        let mut record = FutureRecord::to(topic)
            .key(&key)
            .payload(&event.value)
            .headers(headers);
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                // The producer's queue is full: wait for acknowledgements.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Waits until the oldest batch is acknowledged, or one of its messages
    /// fails or times out. Cancel-safe: acknowledgements taken before a
    /// cancellation stay taken. Pending forever if nothing is in flight.
    pub(super) async fn oldest_acked(&mut self) -> Acked {
        let Some(oldest) = self.window.front_mut() else {
            return std::future::pending().await;
        };
        let deadline = oldest.sent_at + self.timeout;
        loop {
            let done = oldest.positions.len() - oldest.deliveries.len();
            let Some(delivery) = oldest.deliveries.front_mut() else {
                break;
            };
            let position = oldest.positions[done];
            let failure = match tokio::time::timeout_at(deadline, delivery).await {
                Ok(Ok(Ok(_))) => {
                    oldest.deliveries.pop_front();
                    // Acknowledged: its publish span ends.
                    oldest.spans.pop_front();
                    continue;
                }
                Ok(Ok(Err((error, _)))) => DeliveryError::Failed {
                    position,
                    reason: error.to_string(),
                },
                Ok(Err(_)) => DeliveryError::Failed {
                    position,
                    reason: "the producer dropped the message".to_owned(),
                },
                Err(_) => DeliveryError::TimedOut {
                    position,
                    timeout: self.timeout,
                },
            };
            if let Some(span) = oldest.spans.front() {
                span.record("otel.status_code", "ERROR");
            }
            let acked = oldest.positions[..done].to_vec();
            crate::metrics::record_published(&oldest.topics[..done]);
            self.forget(&acked);
            return Acked::Failed(acked, failure);
        }
        let batch = self.window.pop_front().expect("a batch is in flight");
        crate::metrics::record_published(&batch.topics);
        self.forget(&batch.positions);
        Acked::Batch(batch.positions)
    }

    fn forget(&mut self, positions: &[i64]) {
        for position in positions {
            self.in_flight.remove(position);
        }
    }
}

/// The `publish` span of `event`: a producer span in the trace of the
/// request that appended it (see `platform::otel`).
fn publish_span(topic: &str, event: &Outgoing) -> tracing::Span {
    let span = tracing::info_span!(
        "publish",
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.destination.name = topic,
        event_id = %event.event_id,
        event_type = %event.event_type,
        stream_id = %event.stream_id,
        global_position = event.global_position,
    );
    platform::otel::set_parent(&span, event.traceparent.as_deref());
    span
}
