//! Retention of `saga.processed_events`, the ids the handler deduplicates
//! by: a row may go only once no copy of its event can reach the saga
//! again.
//!
//! Pruning by the group's committed offsets alone would be unsafe: the relay
//! publishes an event again (at a higher offset) after a delivery it could
//! not confirm, and that copy is stopped only by this row. So the pruner
//! works in two steps, a checkpoint and a later prune:
//!
//! 1. **Checkpoint** at database time `T0`: in one snapshot, `M` = the
//!    highest log position below every outbox row (the relay has deleted
//!    the outbox rows of every event at or below `M`, so it will never
//!    publish those again); then, after that snapshot, the high watermark
//!    `H_p` of every partition of the saga's topics. Every copy of an event
//!    at or below `M` was acknowledged before `T0`, so it lies below `H_p`.
//! 2. **Prune**, once the saga's consumer group has committed offsets at or
//!    past `H_p` on every partition (so no copy below `H_p` is delivered
//!    again): delete the rows of events at or below `M` that were written
//!    before `T0` (the event had committed before the checkpoint's snapshot,
//!    so the snapshot saw its outbox row if it had one) and are older than
//!    the retention margin, except events that a parked dead letter refers
//!    to (re-driving that letter must still find the row).
//!
//! Then a new checkpoint is taken. Several workers may prune at once; the
//! deletes are idempotent. What this cannot protect against is an operator
//! rewinding the saga group's offsets past pruned events.

use std::time::Duration;

use chrono::{DateTime, Utc};
use platform::kafka::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How the pruner runs.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Time between the pruner's steps (a checkpoint, then a prune).
    pub interval: Duration,
    /// Rows younger than this are kept whatever the offsets say.
    pub margin: Duration,
    /// Rows deleted per statement.
    pub batch: i64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            margin: Duration::from_secs(3600),
            batch: 10_000,
        }
    }
}

/// A partition's high watermark at a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMark {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The offset the next message will get.
    pub high: i64,
    /// The oldest offset still retained.
    pub low: i64,
}

/// What the log and the topics looked like at one moment.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Database time of the snapshot.
    pub taken_at: DateTime<Utc>,
    /// Every event at or below this position has left the outbox.
    pub settled_position: i64,
    /// The partitions' watermarks, read after the snapshot.
    pub marks: Vec<PartitionMark>,
}

/// What one step of the pruner did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A checkpoint was taken.
    CheckpointTaken,
    /// The group has not yet committed past the checkpoint on this many partitions.
    GroupBehind {
        /// Partitions still behind.
        partitions: usize,
    },
    /// Rows deleted.
    Pruned {
        /// How many.
        rows: u64,
    },
}

/// Why a step failed (the pruner logs it and tries again later).
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// PostgreSQL failed.
    #[error("database error while pruning processed events: {0}")]
    Database(#[from] sqlx::Error),
    /// Kafka could not answer.
    #[error("kafka error while pruning processed events: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A blocking Kafka call panicked or was cancelled.
    #[error("kafka query task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Reads the saga's topics' watermarks and its group's committed offsets.
pub struct GroupProgress {
    consumer: std::sync::Arc<BaseConsumer>,
    topics: Vec<String>,
    timeout: Duration,
}

impl GroupProgress {
    /// A reader for the consumer group `group_id` on `topics`. It never
    /// joins the group (nothing subscribes), it only asks about it.
    pub fn new(
        kafka: &KafkaConfig,
        group_id: &str,
        topics: Vec<String>,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let consumer: BaseConsumer = kafka
            .client_config()
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Self {
            consumer: std::sync::Arc::new(consumer),
            topics,
            timeout: Duration::from_secs(10),
        })
    }

    /// Every partition's watermarks.
    pub async fn marks(&self) -> Result<Vec<PartitionMark>, RetentionError> {
        let (consumer, topics, timeout) =
            (self.consumer.clone(), self.topics.clone(), self.timeout);
        let marks = tokio::task::spawn_blocking(move || {
            let mut marks = Vec::new();
            for topic in topics {
                let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
                for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                    let (low, high) = consumer.fetch_watermarks(&topic, partition.id(), timeout)?;
                    marks.push(PartitionMark {
                        topic: topic.clone(),
                        partition: partition.id(),
                        high,
                        low,
                    });
                }
            }
            Ok::<_, rdkafka::error::KafkaError>(marks)
        })
        .await??;
        Ok(marks)
    }

    /// How many of `marks` the group has not committed up to. A partition
    /// without a committed offset counts as reached only when it retains no
    /// message below its mark.
    pub async fn partitions_behind(
        &self,
        marks: &[PartitionMark],
    ) -> Result<usize, RetentionError> {
        let mut wanted = TopicPartitionList::new();
        for mark in marks {
            wanted.add_partition(&mark.topic, mark.partition);
        }
        let (consumer, timeout) = (self.consumer.clone(), self.timeout);
        let committed =
            tokio::task::spawn_blocking(move || consumer.committed_offsets(wanted, timeout))
                .await??;
        Ok(marks
            .iter()
            .filter(|mark| {
                let offset = committed
                    .find_partition(&mark.topic, mark.partition)
                    .map(|element| element.offset());
                match offset {
                    Some(Offset::Offset(offset)) => offset < mark.high,
                    _ => mark.low < mark.high,
                }
            })
            .count())
    }
}

/// The pruner of one worker: a checkpoint, then, once the group is past
/// it, a prune.
pub struct DedupPruner {
    pool: PgPool,
    progress: GroupProgress,
    settings: RetentionSettings,
    checkpoint: Option<Checkpoint>,
}

impl DedupPruner {
    /// A pruner over `pool` watching `progress`.
    pub fn new(pool: PgPool, progress: GroupProgress, settings: RetentionSettings) -> Self {
        Self {
            pool,
            progress,
            settings,
            checkpoint: None,
        }
    }

    /// The pending checkpoint, if any.
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    /// Takes a checkpoint if there is none; otherwise prunes if the group is
    /// past it (and drops it, so the next step takes a new one).
    pub async fn step(&mut self) -> Result<Step, RetentionError> {
        let Some(checkpoint) = &self.checkpoint else {
            self.checkpoint = Some(self.take_checkpoint().await?);
            return Ok(Step::CheckpointTaken);
        };
        let behind = self.progress.partitions_behind(&checkpoint.marks).await?;
        if behind > 0 {
            return Ok(Step::GroupBehind { partitions: behind });
        }
        let rows = self.prune(checkpoint).await?;
        self.checkpoint = None;
        Ok(Step::Pruned { rows })
    }

    async fn take_checkpoint(&self) -> Result<Checkpoint, RetentionError> {
        // One statement, one snapshot: the time and the settled position
        // agree with each other.
        let (taken_at, settled_position): (DateTime<Utc>, i64) = sqlx::query_as(
            "SELECT now(),
                    COALESCE((SELECT min(global_position) - 1 FROM eventstore.outbox),
                             (SELECT max(global_position) FROM eventstore.events),
                             0)",
        )
        .fetch_one(&self.pool)
        .await?;
        // After the snapshot: every copy acknowledged before it is below these.
        let marks = self.progress.marks().await?;
        Ok(Checkpoint {
            taken_at,
            settled_position,
            marks,
        })
    }

    async fn prune(&self, checkpoint: &Checkpoint) -> Result<u64, RetentionError> {
        let margin =
            chrono::Duration::from_std(self.settings.margin).unwrap_or(chrono::Duration::MAX / 2);
        let mut total = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM saga.processed_events WHERE event_id IN (
                     SELECT p.event_id
                     FROM saga.processed_events p
                     JOIN eventstore.events e ON e.event_id = p.event_id
                     WHERE p.processed_at < $1
                       AND p.processed_at < now() - $2::interval
                       AND e.global_position <= $3
                       AND NOT EXISTS (
                           SELECT 1 FROM saga.dead_letters d
                           WHERE d.event_id = p.event_id AND d.status = 'parked')
                     ORDER BY p.processed_at
                     LIMIT $4)",
            )
            .bind(checkpoint.taken_at)
            .bind(margin)
            .bind(checkpoint.settled_position)
            .bind(self.settings.batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += deleted;
            if deleted < u64::try_from(self.settings.batch).unwrap_or(u64::MAX) {
                return Ok(total);
            }
        }
    }

    /// Steps every `interval` until `shutdown`, logging what happened and
    /// counting pruned rows in `saga_processed_events_pruned_total`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.settings.interval) => {}
            }
            match self.step().await {
                Ok(Step::Pruned { rows }) => {
                    crate::metrics::record_processed_events_pruned(rows);
                    tracing::info!(rows, "pruned processed-event rows");
                }
                Ok(Step::GroupBehind { partitions }) => {
                    tracing::debug!(partitions, "saga group not past the checkpoint yet");
                }
                Ok(Step::CheckpointTaken) => tracing::debug!("retention checkpoint taken"),
                Err(error) => tracing::warn!(%error, "pruning processed events failed"),
            }
        }
    }
}
