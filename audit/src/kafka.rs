//! Kafka against the log: every message of the event topics, from the low to
//! the high watermark of every partition, matched to the logged events.
//!
//! Lost: a logged event never seen. Reordered: within a stream, the first
//! occurrences of its events not in version order. Duplicates (allowed,
//! delivery is at-least-once) counted. Phantoms: messages that are not a
//! logged event; mismatched: a logged event's id whose message says
//! something else than the log (fields, payload, key, topic). Dead-letter
//! topics are only counted.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use platform::kafka::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use uuid::Uuid;

use crate::log::{Log, LogEvent};
use crate::report::{AuditReport, Check};

/// How long one metadata or watermark request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The envelope fields a message is compared on.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Envelope {
    /// Unique id.
    pub event_id: Uuid,
    /// Its stream.
    pub stream_id: Uuid,
    /// Its stream's type.
    pub stream_type: String,
    /// Its version in the stream.
    pub stream_version: i64,
    /// Its position in the log.
    pub global_position: i64,
    /// Its type name.
    pub event_type: String,
    /// Version of the payload's schema.
    pub schema_version: i32,
    /// The payload.
    pub payload: serde_json::Value,
}

/// One message of an event topic.
#[derive(Debug, Clone)]
pub struct Message {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key as UTF-8 (lossily), if any.
    pub key: Option<String>,
    /// Its value parsed as an envelope, or why it is not one.
    pub envelope: Result<Envelope, String>,
}

/// What the topics hold.
#[derive(Debug, Clone, Default)]
pub struct Topics {
    /// Every message of the event topics, per partition in offset order.
    pub messages: Vec<Message>,
    /// Messages per event topic.
    pub per_topic: BTreeMap<String, i64>,
    /// Messages per dead-letter topic (not read, counted from watermarks).
    pub dead_letters: BTreeMap<String, i64>,
    /// Event topics that do not exist.
    pub missing: Vec<String>,
}

/// Reads the topics of `stream_types` from the beginning to the high
/// watermarks (taken now) of every partition.
pub async fn read_topics(
    kafka: &KafkaConfig,
    stream_types: &[String],
    idle_timeout: Duration,
) -> anyhow::Result<Topics> {
    let kafka = kafka.clone();
    let topics: Vec<String> = stream_types.iter().map(|t| kafka.topic_for(t)).collect();
    tokio::task::spawn_blocking(move || read_blocking(&kafka, &topics, idle_timeout))
        .await
        .context("the Kafka reader panicked")?
}

/// Partitions of `topic` with their watermarks; `None` if it does not exist.
fn partitions(
    consumer: &BaseConsumer,
    topic: &str,
) -> anyhow::Result<Option<Vec<(i32, i64, i64)>>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .with_context(|| format!("fetching the metadata of {topic}"))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    if let Some(error) = found.error() {
        if RDKafkaErrorCode::from(error) == RDKafkaErrorCode::UnknownTopicOrPartition {
            return Ok(None);
        }
        bail!("metadata of {topic}: {:?}", RDKafkaErrorCode::from(error));
    }
    found
        .partitions()
        .iter()
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), REQUEST_TIMEOUT)
                .with_context(|| format!("fetching the watermarks of {topic}[{}]", p.id()))?;
            Ok((p.id(), low, high))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Some)
}

fn read_blocking(
    kafka: &KafkaConfig,
    topics: &[String],
    idle_timeout: Duration,
) -> anyhow::Result<Topics> {
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", format!("audit-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the Kafka consumer")?;
    let mut result = Topics::default();
    let mut assignment = TopicPartitionList::new();
    // (topic, partition) → the high watermark still to reach.
    let mut remaining: HashMap<(String, i32), i64> = HashMap::new();
    for topic in topics {
        let Some(parts) = partitions(&consumer, topic)? else {
            result.missing.push(topic.clone());
            continue;
        };
        result.per_topic.insert(topic.clone(), 0);
        for (partition, low, high) in parts {
            if high > low {
                assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
                remaining.insert((topic.clone(), partition), high);
            }
        }
        let dead_letter = KafkaConfig::dead_letter_topic(topic);
        if let Some(parts) = partitions(&consumer, &dead_letter)? {
            let count = parts.iter().map(|(_, low, high)| high - low).sum();
            result.dead_letters.insert(dead_letter, count);
        }
    }
    if remaining.is_empty() {
        return Ok(result);
    }
    consumer
        .assign(&assignment)
        .context("assigning the partitions")?;
    let mut progress = Instant::now();
    while !remaining.is_empty() {
        let Some(polled) = consumer.poll(Duration::from_millis(200)) else {
            if progress.elapsed() > idle_timeout {
                let mut short: Vec<String> = remaining
                    .iter()
                    .map(|((t, p), high)| format!("{t}[{p}] (high watermark {high})"))
                    .collect();
                short.sort();
                bail!(
                    "no message for {idle_timeout:?} while still short of {}",
                    short.join(", ")
                );
            }
            continue;
        };
        let message = polled.context("reading Kafka")?;
        progress = Instant::now();
        let slot = (message.topic().to_owned(), message.partition());
        let Some(&high) = remaining.get(&slot) else {
            continue;
        };
        if message.offset() >= high {
            remaining.remove(&slot);
            continue;
        }
        if message.offset() + 1 >= high {
            remaining.remove(&slot);
        }
        *result.per_topic.entry(slot.0.clone()).or_default() += 1;
        let envelope = match message.payload() {
            Some(value) => serde_json::from_slice(value).map_err(|e| e.to_string()),
            None => Err("no value".to_owned()),
        };
        result.messages.push(Message {
            topic: slot.0,
            partition: slot.1,
            offset: message.offset(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            envelope,
        });
    }
    Ok(result)
}

/// What a message says that the log does not, if anything.
fn mismatch(message: &Message, envelope: &Envelope, event: &LogEvent, topic: &str) -> Vec<String> {
    let fields = [
        (
            "stream_id",
            envelope.stream_id.to_string(),
            event.stream_id.to_string(),
        ),
        (
            "stream_type",
            envelope.stream_type.clone(),
            event.stream_type.clone(),
        ),
        (
            "stream_version",
            envelope.stream_version.to_string(),
            event.stream_version.to_string(),
        ),
        (
            "global_position",
            envelope.global_position.to_string(),
            event.global_position.to_string(),
        ),
        (
            "event_type",
            envelope.event_type.clone(),
            event.event_type.clone(),
        ),
        (
            "schema_version",
            envelope.schema_version.to_string(),
            event.schema_version.to_string(),
        ),
        (
            "key",
            message.key.clone().unwrap_or_default(),
            event.stream_id.to_string(),
        ),
        ("topic", message.topic.clone(), topic.to_owned()),
    ];
    let mut wrong: Vec<String> = fields
        .into_iter()
        .filter(|(_, found, logged)| found != logged)
        .map(|(field, found, logged)| format!("{field} {found} (logged {logged})"))
        .collect();
    if envelope.payload != event.payload {
        wrong.push("payload differs".to_owned());
    }
    wrong
}

/// Where a matching message is: (partition, offset, stream version).
type Placed = (i32, i64, i64);

/// Where a message is, for violation details.
fn at(message: &Message) -> String {
    format!(
        "{}[{}]@{}",
        message.topic, message.partition, message.offset
    )
}

/// `topic` without the configured prefix, for the summary lines.
fn unprefixed<'a>(kafka: &KafkaConfig, topic: &'a str) -> &'a str {
    topic.strip_prefix(&kafka.topic_prefix).unwrap_or(topic)
}

/// Compares the topics with the log.
pub fn check(log: &Log, kafka: &KafkaConfig, topics: &Topics, report: &mut AuditReport) {
    let mut seen: HashMap<Uuid, u32> = HashMap::with_capacity(log.events.len());
    // Per stream: (partition, offset, version) of its matching messages.
    let mut per_stream: HashMap<Uuid, Vec<Placed>> = HashMap::new();
    let (mut phantoms, mut mismatched) = (0_usize, 0_usize);
    for message in &topics.messages {
        let envelope = match &message.envelope {
            Ok(envelope) => envelope,
            Err(error) => {
                phantoms += 1;
                let detail = format!("{} is not an event envelope: {error}", at(message));
                report.violation(Check::Kafka, "phantom", detail);
                continue;
            }
        };
        let Some(event) = log.event(envelope.event_id) else {
            phantoms += 1;
            let detail = format!(
                "{}: event {} (stream {} v{}) is not in the log",
                at(message),
                envelope.event_id,
                envelope.stream_id,
                envelope.stream_version
            );
            report.violation(Check::Kafka, "phantom", detail);
            continue;
        };
        let wrong = mismatch(
            message,
            envelope,
            event,
            &kafka.topic_for(&event.stream_type),
        );
        if !wrong.is_empty() {
            mismatched += 1;
            let detail = format!(
                "{}: event {}: {}",
                at(message),
                event.event_id,
                wrong.join(", ")
            );
            report.violation(Check::Kafka, "mismatched", detail);
            continue;
        }
        *seen.entry(event.event_id).or_default() += 1;
        per_stream.entry(event.stream_id).or_default().push((
            message.partition,
            message.offset,
            event.stream_version,
        ));
    }
    let mut lost = 0_usize;
    for event in &log.events {
        if !seen.contains_key(&event.event_id) {
            lost += 1;
            let detail = format!(
                "event {} ({} {} v{}, position {}) is not on {}",
                event.event_id,
                event.event_type,
                event.stream_id,
                event.stream_version,
                event.global_position,
                kafka.topic_for(&event.stream_type)
            );
            report.violation(Check::Kafka, "lost", detail);
        }
    }
    let duplicates: u64 = seen.values().map(|&n| u64::from(n - 1)).sum();
    let mut reordered = 0_usize;
    let mut split = 0_usize;
    let mut streams: Vec<(&Uuid, &mut Vec<Placed>)> = per_stream.iter_mut().collect();
    streams.sort_by_key(|(id, _)| **id);
    for (stream_id, messages) in streams {
        messages.sort_unstable();
        if messages.first().map(|m| m.0) != messages.last().map(|m| m.0) {
            split += 1;
            let detail = format!("stream {stream_id} is on more than one partition");
            report.violation(Check::Kafka, "split", detail);
        }
        let mut first_seen = std::collections::HashSet::new();
        let mut highest = 0_i64;
        for &(partition, offset, version) in messages.iter() {
            if !first_seen.insert(version) {
                continue;
            }
            if version < highest {
                reordered += 1;
                let detail = format!(
                    "stream {stream_id}: v{version} first published at [{partition}]@{offset}, after v{highest}"
                );
                report.violation(Check::Kafka, "reordered", detail);
            }
            highest = highest.max(version);
        }
    }
    for topic in &topics.missing {
        report.violation(
            Check::Kafka,
            "missing-topic",
            format!("{topic} does not exist"),
        );
    }
    let per_topic: Vec<String> = topics
        .per_topic
        .iter()
        .map(|(t, n)| format!("{} {n}", unprefixed(kafka, t)))
        .collect();
    report.line(
        Check::Kafka,
        format!(
            "kafka: {} logged events, {} messages ({}), {} found, lost {lost}, reordered {reordered}, \
             duplicates {duplicates}, phantoms {phantoms}, mismatched {mismatched}, split streams {split}",
            log.events.len(),
            topics.messages.len(),
            per_topic.join(", "),
            seen.len(),
        ),
    );
    let dead: Vec<String> = topics
        .dead_letters
        .iter()
        .map(|(t, n)| format!("{} {n}", unprefixed(kafka, t)))
        .collect();
    let total: i64 = topics.dead_letters.values().sum();
    report.line(
        Check::Kafka,
        format!("kafka dead letters: {total} messages ({})", dead.join(", ")),
    );
}
