//! Parking: one row per source message and a copy on `<topic>.dlq`, and
//! which streams a batch must hold back.

use std::collections::HashMap;

use platform::dead_letter::{DeadLetterPublisher, PublishError};
use platform::kafka::KafkaConfig;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{Letter, Subject};

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
        let mut conn = self.pool.acquire().await?;
        let parked = self
            .park_on(&mut conn, letter, subject, reason, attempts)
            .await?;
        announce(letter, subject, reason, attempts, parked);
        Ok(parked)
    }

    /// Parks `letter` (an event of `stream`) behind the stream's oldest
    /// parked letter, if the stream still has one that holds it back
    /// ([`Blockers::blocker`]): checked and written under the stream's lock,
    /// which a re-drive also takes to mark letters re-driven, so a letter is
    /// never parked behind one a re-drive has just cleared. `None` if the
    /// stream is no longer held back: the event is to be applied.
    pub async fn park_behind(
        &self,
        letter: &Letter,
        subject: &Subject,
        stream: Uuid,
    ) -> Result<Option<Parked>, ParkError> {
        let mut tx = self.pool.begin().await?;
        lock_stream(&mut tx, stream).await?;
        let blockers = blockers_on(&mut tx, &[stream]).await?;
        let Some(blocker) =
            blockers.blocker(stream, &letter.topic, letter.partition, letter.offset)
        else {
            return Ok(None);
        };
        let reason = blocked_reason(blocker);
        let parked = self.park_on(&mut tx, letter, subject, &reason, 0).await?;
        tx.commit().await?;
        announce(letter, subject, &reason, 0, parked);
        Ok(Some(parked))
    }

    async fn park_on(
        &self,
        conn: &mut PgConnection,
        letter: &Letter,
        subject: &Subject,
        reason: &str,
        attempts: u32,
    ) -> Result<Parked, ParkError> {
        if let Some(id) = parked_at(&mut *conn, letter).await? {
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
        .fetch_optional(&mut *conn)
        .await?;
        match inserted {
            Some(id) => Ok(Parked { id, new: true }),
            // Another instance parked it meanwhile (a rebalance).
            None => {
                let id = parked_at(&mut *conn, letter).await?.ok_or_else(|| {
                    sqlx::Error::Protocol("dead letter vanished after a conflict".to_owned())
                })?;
                Ok(Parked { id, new: false })
            }
        }
    }

    /// The parked letters of `stream_ids`, in one query for a whole batch.
    pub async fn blockers(&self, stream_ids: &[Uuid]) -> Result<Blockers, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        blockers_on(&mut conn, stream_ids).await
    }
}

/// Logs and counts a letter parked for the first time.
fn announce(letter: &Letter, subject: &Subject, reason: &str, attempts: u32, parked: Parked) {
    if !parked.new {
        return;
    }
    tracing::error!(
        dead_letter = parked.id, topic = letter.topic.as_str(), partition = letter.partition,
        offset = letter.offset, event_id = ?subject.event_id, stream_id = ?subject.stream_id,
        %reason, attempts, "message dead-lettered"
    );
    crate::metrics::record_dead_letter(&letter.topic);
}

async fn parked_at(conn: &mut PgConnection, letter: &Letter) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        r#"SELECT id FROM projector.dead_letters
           WHERE topic = $1 AND partition = $2 AND "offset" = $3"#,
    )
    .bind(&letter.topic)
    .bind(letter.partition)
    .bind(letter.offset)
    .fetch_optional(conn)
    .await
}

async fn blockers_on(
    conn: &mut PgConnection,
    stream_ids: &[Uuid],
) -> Result<Blockers, sqlx::Error> {
    let rows: Vec<(Uuid, i64, String, i32, i64)> = sqlx::query_as(
        r#"SELECT stream_id, id, topic, partition, "offset" FROM projector.dead_letters
           WHERE stream_id = ANY($1) AND status = 'parked'"#,
    )
    .bind(stream_ids)
    .fetch_all(conn)
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

/// Takes `stream`'s dead-letter lock until the end of the transaction:
/// parking behind a letter and marking letters re-driven serialize on it.
/// (Two-key advisory locks live apart from the one-key locks used elsewhere.)
pub(crate) async fn lock_stream(conn: &mut PgConnection, stream: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('projector.dead_letters'), hashtext($1))")
        .bind(stream.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// The reason of a letter parked behind `blocker`.
pub fn blocked_reason(blocker: i64) -> String {
    format!("blocked by dead letter #{blocker}")
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
