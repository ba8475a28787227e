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
//! read model never sees a stream's events out of order. [`redrive`] takes
//! a stream's parked letters oldest first and applies each through the
//! normal apply path ([`crate::consumer::project_batch`]), reading the event
//! from the event log (the source of truth; the Kafka value may be the
//! corrupt thing); each that applies is marked `redriven`, the first that
//! fails again stays parked (attempts + 1) and holds back the rest of its
//! stream.
//!
//! The same functions ([`list`], [`show`], [`redrive`]) serve
//! `projector dead-letters list|show|redrive` and the web console; their
//! types mirror `saga::dead_letter`'s so both can be shown alike.

use std::collections::{HashMap, HashSet};

use eventstore::scan::{self, StreamRange};
use eventstore::EventEnvelope;
use platform::dead_letter::{DeadLetterPublisher, PublishError};
use platform::kafka::KafkaConfig;
use sqlx::PgPool;
use uuid::Uuid;

pub use platform::dead_letter::Letter;

use crate::apply::{ApplyError, Verdict};
use crate::projection::{self, Decoded};

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

/// A letter was parked (or had been, by an earlier delivery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parked {
    /// Its id.
    pub id: i64,
    /// `false` if the message had been parked before (a redelivery): no
    /// second row, no second copy on the dead-letter topic.
    pub new: bool,
}

/// Why a message could not be parked yet (the caller retries; the
/// partition's offset does not move meanwhile).
#[derive(Debug, thiserror::Error)]
pub enum ParkError {
    /// PostgreSQL failed.
    #[error("recording the dead letter: {0}")]
    Database(#[from] sqlx::Error),
    /// Kafka refused the copy.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// The parked letters of some streams, to hold their later events back.
#[derive(Debug, Default)]
pub struct Blockers {
    /// Per stream: `(id, topic, partition, offset)` of each parked letter.
    parked: HashMap<Uuid, Vec<(i64, String, i32, i64)>>,
}

impl Blockers {
    /// The dead letter that holds back the message at `offset` of
    /// `topic`/`partition` of `stream`, if any: the stream's oldest parked
    /// letter, when one was parked at or before that message (a redelivery
    /// of what came before the first letter applies as usual; the parked
    /// message itself maps onto its existing row).
    pub fn blocker(&self, stream: Uuid, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let letters = self.parked.get(&stream)?;
        let holds = letters
            .iter()
            .any(|(_, t, p, o)| t != topic || *p != partition || *o <= offset);
        holds.then(|| letters.iter().map(|(id, ..)| *id).min())?
    }
}

/// Parks messages: one row per source message, and a copy on `<topic>.dlq`.
pub struct DeadLetters {
    pool: PgPool,
    publisher: DeadLetterPublisher,
}

impl DeadLetters {
    /// Parks through `pool` and a producer on `kafka`.
    pub fn new(pool: PgPool, kafka: &KafkaConfig) -> Result<Self, rdkafka::error::KafkaError> {
        Ok(Self {
            pool,
            publisher: DeadLetterPublisher::new(kafka, "projector")?,
        })
    }

    /// Parks `letter`, idempotently per source offset: a message parked
    /// before keeps its row and is not published again. Otherwise the copy
    /// is published first, then the row inserted (`ON CONFLICT DO
    /// NOTHING`), so a crash in between at worst publishes the copy twice
    /// and never loses the row.
    pub async fn park(
        &self,
        letter: &Letter,
        subject: &Subject,
        reason: &str,
        attempts: u32,
    ) -> Result<Parked, ParkError> {
        if let Some(id) = self.parked_at(letter).await? {
            return Ok(Parked { id, new: false });
        }
        self.publisher.publish(letter, reason, attempts).await?;
        let inserted: Option<i64> = sqlx::query_scalar(
            r#"INSERT INTO projector.dead_letters
                   (topic, partition, "offset", message_key, payload, headers, event_id, stream_id,
                    stream_type, global_position, stream_version, reason, attempts)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
               ON CONFLICT (topic, partition, "offset") DO NOTHING
               RETURNING id"#,
        )
        .bind(&letter.topic)
        .bind(letter.partition)
        .bind(letter.offset)
        .bind(&letter.key)
        .bind(&letter.payload)
        .bind(letter.headers_json())
        .bind(subject.event_id)
        .bind(subject.stream_id)
        .bind(&subject.stream_type)
        .bind(subject.global_position)
        .bind(subject.stream_version)
        .bind(reason)
        .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
        .fetch_optional(&self.pool)
        .await?;
        let Some(id) = inserted else {
            // Another instance parked it meanwhile (a rebalance).
            let id = self.parked_at(letter).await?.ok_or_else(|| {
                sqlx::Error::Protocol("dead letter vanished after a conflict".to_owned())
            })?;
            return Ok(Parked { id, new: false });
        };
        tracing::error!(
            dead_letter = id, topic = letter.topic.as_str(), partition = letter.partition,
            offset = letter.offset, event_id = ?subject.event_id, stream_id = ?subject.stream_id,
            %reason, attempts, "message dead-lettered"
        );
        crate::metrics::record_dead_letter(&letter.topic);
        Ok(Parked { id, new: true })
    }

    async fn parked_at(&self, letter: &Letter) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(
            r#"SELECT id FROM projector.dead_letters
               WHERE topic = $1 AND partition = $2 AND "offset" = $3"#,
        )
        .bind(&letter.topic)
        .bind(letter.partition)
        .bind(letter.offset)
        .fetch_optional(&self.pool)
        .await
    }

    /// The parked letters of `stream_ids`, in one query for a whole batch.
    pub async fn blockers(&self, stream_ids: &[Uuid]) -> Result<Blockers, sqlx::Error> {
        let rows: Vec<(Uuid, i64, String, i32, i64)> = sqlx::query_as(
            r#"SELECT stream_id, id, topic, partition, "offset" FROM projector.dead_letters
               WHERE stream_id = ANY($1) AND status = 'parked'"#,
        )
        .bind(stream_ids)
        .fetch_all(&self.pool)
        .await?;
        let mut blockers = Blockers::default();
        for (stream, id, topic, partition, offset) in rows {
            blockers
                .parked
                .entry(stream)
                .or_default()
                .push((id, topic, partition, offset));
        }
        Ok(blockers)
    }
}

/// The reason of a letter parked behind `blocker`.
pub fn blocked_reason(blocker: i64) -> String {
    format!("blocked by dead letter #{blocker}")
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

/// What re-driving one letter did to the read models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reapplied {
    /// Its event was applied (with any earlier event of its stream the read
    /// models lacked, from the log).
    Applied,
    /// The read models already had it (e.g. re-driving an earlier letter of
    /// its stream filled it in from the log).
    Duplicate,
    /// No projection consumes its stream type.
    Ignored,
}

/// The result of re-driving one dead letter (`saga::dead_letter::Redriven`'s
/// counterpart).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Redriven {
    /// The dead letter.
    pub id: i64,
    /// What applying it did, or why it failed again (it stays parked, its
    /// attempts counted up, and the later letters of its stream wait).
    pub outcome: Result<Reapplied, String>,
}

/// The name the console uses for [`Redriven`].
pub type RedriveResult = Redriven;

/// Re-drives parked dead letters, oldest first, through the normal apply
/// path, each event read from the event log:
///
/// - `Some(id)`: every parked letter of `id`'s stream (a letter cannot go
///   before the earlier ones of its stream), or `id` alone if its stream is
///   unknown;
/// - `None`: every parked letter, stream by stream (in the order of each
///   stream's oldest letter).
///
/// Each success is marked `redriven`. The first failure of a stream stays
/// parked with attempts + 1 and the stream's later letters are not tried
/// (they stay parked behind it); other streams go on. Once a stream's
/// letters are all re-driven it is looked at again, so an event the live
/// projector parked behind them meanwhile is re-driven too. A letter that is
/// not parked (or does not exist) yields no result. Only database failures
/// are errors.
pub async fn redrive(pool: &PgPool, id: Option<i64>) -> Result<Vec<Redriven>, sqlx::Error> {
    let parked: Vec<DeadLetter> = match id {
        Some(id) => show(pool, id)
            .await?
            .into_iter()
            .filter(|l| l.status == "parked")
            .collect(),
        None => list(pool, false).await?,
    };
    // Units of work in order: a stream (all its parked letters), or a
    // letter that names none.
    let mut streams_seen: HashSet<Uuid> = HashSet::new();
    let mut units: Vec<Result<Uuid, DeadLetter>> = Vec::new();
    for letter in parked {
        match letter.stream_id {
            Some(stream) if streams_seen.insert(stream) => units.push(Ok(stream)),
            Some(_) => {}
            None => units.push(Err(letter)),
        }
    }
    let mut results = Vec::new();
    for unit in units {
        match unit {
            Err(letter) => {
                let outcome = redrive_letter(pool, &letter).await?;
                results.push(Redriven {
                    id: letter.id,
                    outcome,
                });
            }
            Ok(stream) => redrive_stream(pool, stream, &mut results).await?,
        }
    }
    Ok(results)
}

/// Passes over one stream's parked letters: letters parked by the live
/// projector during a re-drive are picked up by the next pass.
const STREAM_PASSES: usize = 10;

/// Re-drives `stream`'s parked letters oldest first, until none is left or
/// one fails again.
async fn redrive_stream(
    pool: &PgPool,
    stream: Uuid,
    results: &mut Vec<Redriven>,
) -> Result<(), sqlx::Error> {
    for _ in 0..STREAM_PASSES {
        let letters = parked_of_stream(pool, stream).await?;
        if letters.is_empty() {
            return Ok(());
        }
        for letter in letters {
            let outcome = redrive_letter(pool, &letter).await?;
            let failed = outcome.is_err();
            results.push(Redriven {
                id: letter.id,
                outcome,
            });
            if failed {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Re-drives one letter and records the outcome: `redriven`, or attempts + 1.
async fn redrive_letter(
    pool: &PgPool,
    letter: &DeadLetter,
) -> Result<Result<Reapplied, String>, sqlx::Error> {
    let outcome = redrive_one(pool, letter).await?;
    match &outcome {
        Ok(_) => {
            sqlx::query(
                "UPDATE projector.dead_letters SET status = 'redriven', redriven_at = now()
                 WHERE id = $1 AND status = 'parked'",
            )
            .bind(letter.id)
            .execute(pool)
            .await?;
            tracing::info!(dead_letter = letter.id, "dead letter re-driven");
        }
        Err(error) => {
            sqlx::query(
                "UPDATE projector.dead_letters SET attempts = attempts + 1
                 WHERE id = $1 AND status = 'parked'",
            )
            .bind(letter.id)
            .execute(pool)
            .await?;
            tracing::warn!(dead_letter = letter.id, %error, "dead letter failed again");
        }
    }
    Ok(outcome)
}

async fn parked_of_stream(pool: &PgPool, stream: Uuid) -> Result<Vec<DeadLetter>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM projector.dead_letters
         WHERE stream_id = $1 AND status = 'parked' ORDER BY id"
    ))
    .bind(stream)
    .fetch_all(pool)
    .await
}

/// Applies one letter's event from the log; the inner error says why it
/// failed again. A letter that names its stream but not its event (a
/// message without the relay's headers, keyed by stream id) brings the
/// stream up to date with the log instead.
async fn redrive_one(
    pool: &PgPool,
    letter: &DeadLetter,
) -> Result<Result<Reapplied, String>, sqlx::Error> {
    let event_id = letter
        .event_id
        .or_else(|| envelope_event_id(&letter.payload));
    let envelope = match (event_id, letter.stream_id) {
        (Some(event_id), _) => match read_event(pool, event_id).await? {
            Some(envelope) => envelope,
            None => return Ok(Err(format!("event {event_id} is not in the event log"))),
        },
        (None, Some(stream)) => match read_last_event(pool, stream).await? {
            Some(envelope) => envelope,
            None => return Ok(Err(format!("stream {stream} has no events in the log"))),
        },
        (None, None) => {
            return Ok(Err(
                "the message names no event and no stream (no relay headers, no stream id as \
                 key, and the value is not an event envelope), so there is nothing to read from \
                 the event log; it holds no stream back"
                    .to_owned(),
            ))
        }
    };
    let event = Decoded::from_envelope(&envelope);
    if projection::interested_in(&event.stream_type)
        .next()
        .is_none()
    {
        return Ok(Ok(Reapplied::Ignored));
    }
    let verdict = match crate::consumer::project_batch(pool, std::slice::from_ref(&event)).await {
        Ok(verdicts) => verdicts.into_iter().next(),
        Err(ApplyError::Database { context, source }) => {
            return Err(std::sync::Arc::try_unwrap(source).unwrap_or_else(|shared| {
                sqlx::Error::Protocol(format!("while {context}: {shared}"))
            }))
        }
        Err(other) => return Ok(Err(other.to_string())),
    };
    Ok(match verdict {
        Some(Verdict::Applied) => Ok(Reapplied::Applied),
        Some(Verdict::Duplicate) => Ok(Reapplied::Duplicate),
        Some(Verdict::Ignored) | None => Ok(Reapplied::Ignored),
        Some(Verdict::Rejected(error)) => Err(error.to_string()),
    })
}

/// The `event_id` of a value that is JSON with one, even if it is not a
/// whole envelope.
fn envelope_event_id(payload: &str) -> Option<Uuid> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    value.get("event_id")?.as_str()?.parse().ok()
}

/// The last event of `stream` in the log.
async fn read_last_event(
    pool: &PgPool,
    stream: Uuid,
) -> Result<Option<EventEnvelope>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let Some(version) = eventstore::store::stream_version(&mut conn, stream).await? else {
        return Ok(None);
    };
    read_version(&mut conn, stream, version).await
}

/// The event `event_id` from the log.
async fn read_event(pool: &PgPool, event_id: Uuid) -> Result<Option<EventEnvelope>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let at: Option<(Uuid, i64)> = sqlx::query_as(
        "SELECT stream_id, stream_version FROM eventstore.events WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((stream_id, version)) = at else {
        return Ok(None);
    };
    read_version(&mut conn, stream_id, version).await
}

/// Version `version` of `stream_id` from the log.
async fn read_version(
    conn: &mut sqlx::PgConnection,
    stream_id: Uuid,
    version: i64,
) -> Result<Option<EventEnvelope>, sqlx::Error> {
    let range = StreamRange {
        stream_id,
        after_version: version - 1,
        up_to_version: Some(version),
    };
    Ok(scan::read_ranges(conn, &[range]).await?.pop())
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

    #[test]
    fn a_stream_is_blocked_from_its_first_parked_message_on() {
        let stream = Uuid::now_v7();
        let mut blockers = Blockers::default();
        blockers.parked.insert(
            stream,
            vec![(12, "t".to_owned(), 1, 40), (9, "t".to_owned(), 1, 30)],
        );
        assert_eq!(blockers.blocker(stream, "t", 1, 29), None, "came before");
        assert_eq!(blockers.blocker(stream, "t", 1, 30), Some(9), "itself");
        assert_eq!(blockers.blocker(stream, "t", 1, 35), Some(9));
        assert_eq!(
            blockers.blocker(stream, "u", 0, 1),
            Some(9),
            "elsewhere: held"
        );
        assert_eq!(blockers.blocker(Uuid::now_v7(), "t", 1, 50), None);
    }

    #[test]
    fn an_event_id_is_found_in_json_that_is_not_a_whole_envelope() {
        let id = Uuid::now_v7();
        assert_eq!(
            envelope_event_id(&format!(r#"{{"event_id":"{id}","stream_type":7}}"#)),
            Some(id)
        );
        assert_eq!(envelope_event_id("{not json"), None);
        assert_eq!(envelope_event_id(r#"{"event_id":"x"}"#), None);
    }
}
