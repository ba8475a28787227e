//! The group-commit writers: one task per shard of the stream ids, each
//! running its queue in batches (see [`super::batch`]).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use domain::Aggregate;
use eventstore::Repository;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::job::{Job, Pending};
use super::{batch, Command, CommandContext, Reply};
use crate::error::ApiError;

/// How the writers batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterSettings {
    /// Writers (each holds a connection while its batch runs); a stream is
    /// always written by the same one.
    pub writers: usize,
    /// Most commands in one transaction.
    pub max_batch: usize,
    /// Commands waiting per writer before callers wait to queue theirs.
    pub queue_capacity: usize,
    /// Attempts per command when its stream keeps moving (409 after).
    pub max_attempts: u32,
    /// How long an `Idempotency-Key` is remembered (the retry window): a
    /// key used again after that is a new command.
    pub idempotency_retention: Duration,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            writers: 4,
            max_batch: 256,
            queue_capacity: 4_096,
            max_attempts: 5,
            idempotency_retention: crate::idempotency::DEFAULT_RETENTION,
        }
    }
}

/// Handles to the running writers. Dropping the last one stops them once
/// their queues are empty.
#[derive(Debug, Clone)]
pub struct Writers {
    queues: Vec<mpsc::Sender<Box<dyn Job>>>,
}

impl Writers {
    /// Starts `settings.writers` writer tasks over `pool`. Needs a Tokio runtime.
    pub fn start(pool: PgPool, repository: Repository, settings: WriterSettings) -> Self {
        let queues = (0..settings.writers.max(1))
            .map(|shard| {
                let (sender, receiver) = mpsc::channel(settings.queue_capacity.max(1));
                let writer = Writer {
                    pool: pool.clone(),
                    repository: repository.clone(),
                    settings,
                    queue: receiver,
                };
                tokio::spawn(writer.run(shard));
                sender
            })
            .collect();
        Self { queues }
    }

    /// Commands waiting in the queues (not counting the batches running).
    pub fn queued(&self) -> usize {
        self.queues
            .iter()
            .map(|queue| queue.max_capacity() - queue.capacity())
            .sum()
    }

    /// Queues `command` with the writer of its stream and waits for its answer.
    pub(crate) async fn submit<C: Command>(
        &self,
        command: C,
        context: CommandContext,
    ) -> Result<Reply, ApiError>
    where
        <C::Aggregate as Aggregate>::Event: Send,
    {
        let queue = &self.queues[shard_of(command.stream_id(), self.queues.len())];
        let (caller, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            command,
            context,
            attempt: 1,
            caller,
        });
        queue
            .send(job)
            .await
            .map_err(|_| ApiError::Internal("the command writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| ApiError::Internal("the command writer dropped a command".into()))?
    }
}

fn shard_of(stream_id: Uuid, shards: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    stream_id.hash(&mut hasher);
    usize::try_from(hasher.finish() % shards as u64).expect("a shard index fits in usize")
}

struct Writer {
    pool: PgPool,
    repository: Repository,
    settings: WriterSettings,
    queue: mpsc::Receiver<Box<dyn Job>>,
}

impl Writer {
    /// Runs batches until every sender is gone and the queue is empty.
    async fn run(mut self, shard: usize) {
        tracing::debug!(shard, "command writer started");
        let mut retries: Vec<Box<dyn Job>> = Vec::new();
        loop {
            let mut jobs = std::mem::take(&mut retries);
            if jobs.is_empty() {
                match self.queue.recv().await {
                    Some(job) => jobs.push(job),
                    None => break,
                }
            }
            while jobs.len() < self.settings.max_batch {
                match self.queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            metrics::histogram!("command_batch_size").record(jobs.len() as f64);
            let leftovers = batch::run(
                &self.pool,
                &self.repository,
                jobs,
                self.settings.idempotency_retention,
            )
            .await;
            retries.extend(leftovers.requeue);
            for mut job in leftovers.retry {
                if job.attempt() >= self.settings.max_attempts {
                    let (stream_id, attempts) = (job.stream_id(), job.attempt());
                    tracing::warn!(%stream_id, attempts, "giving up after repeated conflicts");
                    metrics::counter!("command_retries_exhausted_total").increment(1);
                    job.answer(Err(ApiError::RetriesExhausted {
                        stream_id,
                        attempts,
                    }));
                } else {
                    job.retry();
                    retries.push(job);
                }
            }
        }
        tracing::debug!(shard, "command writer stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_always_goes_to_the_same_writer() {
        let id = Uuid::now_v7();
        assert_eq!(shard_of(id, 4), shard_of(id, 4));
        let used: std::collections::HashSet<usize> =
            (0..200).map(|_| shard_of(Uuid::now_v7(), 4)).collect();
        assert_eq!(used.len(), 4, "ids spread over every writer");
        assert_eq!(shard_of(id, 1), 0);
    }
}
