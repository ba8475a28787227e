//! The projector's dead letters: an event the live projector cannot decode
//! or apply after bounded attempts, and a Kafka message that is not an
//! event at all, is parked in `projector.dead_letters` and copied to
//! `<topic>.dlq` (headers `dlq_consumer` = `projector`, `dlq_reason`,
//! `dlq_source_topic`, `dlq_source_partition`, `dlq_source_offset`,
//! `dlq_attempts`; the saga worker's copies share the topic); the
//! projector goes on with every other stream. Nothing is skipped silently.
//!
//! Ordering: while a stream has a parked letter, every later event of that
//! stream is parked behind it (reason `blocked by dead letter #N`), so a
//! read model never sees a stream's events out of order. [`redrive()`] takes
//! a stream's parked letters oldest first and applies each through the
//! normal apply path ([`crate::consumer::project_batch`]), reading the event
//! from the event log (the source of truth; the Kafka value may be the
//! corrupt thing); each that applies is marked `redriven`, the first that
//! fails again stays parked (attempts + 1) and holds back the rest of its
//! stream.
//!
//! Parking and which streams are held back: [`DeadLetters`], [`Blockers`];
//! applying parked letters again from the log: [`redrive()`].
//!
//! The same functions ([`list`], [`show`], [`redrive()`]) serve
//! `projector dead-letters list|show|redrive` and the web console; their
//! types mirror `saga::dead_letter`'s so both can be shown alike.

mod park;
mod redrive;

use sqlx::PgPool;
use uuid::Uuid;

pub use park::{blocked_reason, Blockers, DeadLetters, ParkError, Parked};
pub use platform::dead_letter::Letter;
pub use redrive::{redrive, Reapplied, RedriveResult, Redriven};

use crate::projection::Decoded;

/// What is known of the event a parked message carried: everything when it
/// decoded, else what its headers (as the relay writes them) and key say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// The event's id.
    pub event_id: Option<Uuid>,
    /// Its stream.
    pub stream_id: Option<Uuid>,
    /// Its stream's type.
    pub stream_type: Option<String>,
    /// Its position in the log.
    pub global_position: Option<i64>,
    /// Its version in the stream.
    pub stream_version: Option<i64>,
}

impl Subject {
    /// A decoded event's identity.
    pub fn of_event(event: &Decoded) -> Self {
        Self {
            event_id: Some(event.event_id),
            stream_id: Some(event.stream_id),
            stream_type: Some(event.stream_type.clone()),
            global_position: Some(event.global_position),
            stream_version: Some(event.stream_version),
        }
    }

    /// What the headers of a message that is not an event envelope say
    /// (`event_id`, `stream_id`, ...), the stream falling back to the key
    /// (the relay keys messages by stream id). Unparseable values are unknown.
    pub fn of_letter(letter: &Letter) -> Self {
        let uuid = |key: &str| letter.header(key).and_then(|v| v.parse::<Uuid>().ok());
        let number = |key: &str| letter.header(key).and_then(|v| v.parse::<i64>().ok());
        Self {
            event_id: uuid("event_id"),
            stream_id: uuid("stream_id")
                .or_else(|| letter.key.as_deref().and_then(|k| k.parse().ok())),
            stream_type: letter
                .header("stream_type")
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            global_position: number("global_position"),
            stream_version: number("stream_version"),
        }
    }
}

/// A parked (or re-driven) message, as stored in `projector.dead_letters`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct DeadLetter {
    /// Id, in parking order.
    pub id: i64,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Message key.
    pub message_key: Option<String>,
    /// Message value, as received.
    pub payload: String,
    /// Message headers, as a JSON object.
    pub headers: serde_json::Value,
    /// The event's id, if known.
    pub event_id: Option<Uuid>,
    /// The stream it belongs to, if known.
    pub stream_id: Option<Uuid>,
    /// The stream's type, if known.
    pub stream_type: Option<String>,
    /// The event's position in the log, if known.
    pub global_position: Option<i64>,
    /// The event's version in its stream, if known.
    pub stream_version: Option<i64>,
    /// Why it was parked.
    pub reason: String,
    /// How often it was tried (0 for a letter parked behind another one;
    /// each failed re-drive adds one).
    pub attempts: i32,
    /// `parked` or `redriven`.
    pub status: String,
    /// When it was parked.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it was re-driven.
    pub redriven_at: Option<chrono::DateTime<chrono::Utc>>,
}

const COLUMNS: &str = r#"id, topic, partition, "offset", message_key, payload, headers, event_id,
    stream_id, stream_type, global_position, stream_version, reason, attempts, status,
    created_at, redriven_at"#;

/// Dead letters, oldest first; only parked ones unless `include_redriven`.
pub async fn list(pool: &PgPool, include_redriven: bool) -> Result<Vec<DeadLetter>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM projector.dead_letters WHERE $1 OR status = 'parked' ORDER BY id"
    ))
    .bind(include_redriven)
    .fetch_all(pool)
    .await
}

/// One dead letter, parked or re-driven.
pub async fn show(pool: &PgPool, id: i64) -> Result<Option<DeadLetter>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM projector.dead_letters WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(key: Option<&str>, headers: &[(&str, &str)]) -> Letter {
        Letter {
            topic: "t.orders".to_owned(),
            partition: 0,
            offset: 7,
            key: key.map(str::to_owned),
            payload: "{not json".to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn the_subject_of_a_corrupt_message_comes_from_its_headers_then_its_key() {
        let (event, stream, key) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let subject = Subject::of_letter(&letter(
            Some(&key.to_string()),
            &[
                ("event_id", &event.to_string()),
                ("stream_id", &stream.to_string()),
                ("stream_type", "orders"),
                ("stream_version", "3"),
                ("global_position", "not a number"),
            ],
        ));
        assert_eq!(subject.event_id, Some(event));
        assert_eq!(subject.stream_id, Some(stream));
        assert_eq!(subject.stream_type.as_deref(), Some("orders"));
        assert_eq!(subject.stream_version, Some(3));
        assert_eq!(subject.global_position, None);

        let keyed = Subject::of_letter(&letter(Some(&key.to_string()), &[]));
        assert_eq!(keyed.stream_id, Some(key));
        assert_eq!(keyed.event_id, None);
        assert_eq!(
            Subject::of_letter(&letter(Some("nope"), &[])),
            Subject::default()
        );
    }
}
