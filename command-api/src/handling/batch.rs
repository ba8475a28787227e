//! One batch of commands in one transaction (see the [module
//! documentation](super)): every command ends answered, or handed back to
//! be retried in the next batch.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use eventstore::{append_batch, Appended, Repository, StreamAppend, StreamOutcome};
use sqlx::PgPool;
use uuid::Uuid;

use super::job::{Decided, Job};
use super::staged::{command_error, Staging};
use super::Reply;
use crate::error::{ApiError, DbContext};
use crate::idempotency::{self, Claim};

/// How one command of a batch ended.
enum Outcome {
    /// Its answer (sent once the batch committed).
    Answer(Result<Reply, ApiError>),
    /// Run it again in a later batch: its stream moved meanwhile (counts as
    /// an attempt).
    Retry,
    /// Run it in the next batch without counting an attempt: another
    /// command of this batch holds its `Idempotency-Key`.
    Requeue,
}

/// The commands a batch hands back.
#[derive(Default)]
pub(crate) struct Leftovers {
    /// Lost a race: to retry, as another attempt.
    pub retry: Vec<Box<dyn Job>>,
    /// Waited for another command with their key: to run next, as they are.
    pub requeue: Vec<Box<dyn Job>>,
}

/// Runs `jobs` in one transaction, answers those that are done and returns
/// the others. A failed transaction answers every job with the error, or
/// hands them all back when the failure is worth retrying (a deadlock).
#[tracing::instrument(skip_all, fields(commands = jobs.len()))]
pub(crate) async fn run(
    pool: &PgPool,
    repository: &Repository,
    jobs: Vec<Box<dyn Job>>,
    key_retention: Duration,
) -> Leftovers {
    // One transaction for many requests: linked to each one's append span.
    let span = tracing::Span::current();
    for origin in jobs.iter().filter_map(|job| job.context().origin.as_ref()) {
        span.follows_from(origin);
    }
    let outcomes = transact(pool, repository, &jobs, key_retention).await;
    let mut leftovers = Leftovers::default();
    match outcomes {
        Ok(outcomes) => {
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                match outcome {
                    Outcome::Answer(answer) => job.answer(answer),
                    Outcome::Retry => leftovers.retry.push(job),
                    Outcome::Requeue => leftovers.requeue.push(job),
                }
            }
        }
        Err(error) if error.is_retryable() => {
            tracing::debug!(%error, "batch failed; retrying its commands");
            leftovers.retry = jobs;
        }
        Err(error) => {
            for job in jobs {
                job.answer(Err(error.clone()));
            }
        }
    }
    leftovers
}

/// A command whose decision is to be written.
struct Plan {
    index: usize,
    decided: Decided,
}

async fn transact(
    pool: &PgPool,
    repository: &Repository,
    jobs: &[Box<dyn Job>],
    key_retention: Duration,
) -> Result<Vec<Outcome>, ApiError> {
    let mut outcomes: Vec<Option<Outcome>> = jobs.iter().map(|_| None).collect();
    let mut tx = pool
        .begin()
        .await
        .during(|| "starting a transaction".into())?;

    // 1. Idempotency keys: replays and keys in flight are answered now.
    let mut keys_seen = HashSet::new();
    let mut keyed = Vec::new();
    for (index, job) in jobs.iter().enumerate() {
        if let Some(request) = &job.context().idempotency {
            if keys_seen.insert(request.key.as_str()) {
                keyed.push((index, request.key.as_str()));
            } else {
                // The same key twice in one batch: the second waits for the
                // first's record, and is then replayed.
                outcomes[index] = Some(Outcome::Requeue);
            }
        }
    }
    let key_list: Vec<&str> = keyed.iter().map(|(_, key)| *key).collect();
    let claims = idempotency::claim_all(&mut tx, &key_list, key_retention).await?;
    for ((index, _), claim) in keyed.iter().zip(claims) {
        let job = &jobs[*index];
        let request = job.context().idempotency.as_ref().expect("keyed job");
        outcomes[*index] = match claim {
            Claim::Fresh => None,
            Claim::InFlight => Some(Outcome::Answer(Err(ApiError::IdempotencyKeyInFlight))),
            Claim::Recorded(stored) if stored.request_hash != request.fingerprint => {
                Some(Outcome::Answer(Err(ApiError::IdempotencyKeyReused)))
            }
            Claim::Recorded(stored) => Some(Outcome::Answer(Ok(
                job.replay(stored.status(), stored.response_body)
            ))),
        };
    }

    // 2. Load every stream the remaining commands touch.
    let requests: Vec<_> = jobs
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_none())
        .flat_map(|(job, _)| job.loads())
        .collect();
    // Streams that lost a race lately are locked before they are read, so
    // a retry does not lose to the same writer again.
    let stream_ids: Vec<Uuid> = requests.iter().map(|r| r.stream_id()).collect();
    repository
        .lock_contended(&mut tx, &stream_ids)
        .await
        .map_err(|error| command_error(stream_ids.first().copied().unwrap_or_default(), error))?;
    let prefetched = repository
        .prefetch(&mut tx, &requests)
        .await
        .map_err(|error| {
            command_error(
                requests.first().map_or(Uuid::nil(), |r| r.stream_id()),
                error,
            )
        })?;
    let mut staging = Staging::new(&prefetched);

    // 3. Decide each in order, against what the ones before it decided.
    let mut plans = Vec::new();
    let mut refusals = Vec::new();
    for (index, job) in jobs.iter().enumerate() {
        if outcomes[index].is_some() {
            continue;
        }
        // A refusal decided on a state the batch changed stands only if
        // those changes commit.
        let saw_staged: Vec<Uuid> = job
            .loads()
            .iter()
            .map(|request| request.stream_id())
            .filter(|id| staging.is_staged(*id))
            .collect();
        match job.decide(&mut staging) {
            Ok(decided) => plans.push(Plan { index, decided }),
            Err(refusal) => refusals.push((index, refusal, saw_staged)),
        }
    }

    // 4. Append every changed stream in one statement.
    let mut conflicted: HashMap<Uuid, i64> = HashMap::new();
    let appends = stream_appends(jobs, &plans);
    let appended: HashMap<Uuid, Appended> = if appends.is_empty() {
        HashMap::new()
    } else {
        let results = append_batch(&mut tx, &appends).await?;
        let mut appended = HashMap::new();
        for (append, result) in appends.iter().zip(results) {
            match result {
                StreamOutcome::Appended(done) => {
                    appended.insert(append.stream_id, done);
                }
                StreamOutcome::Conflict { actual } => {
                    tracing::debug!(stream_id = %append.stream_id, actual, "stream moved meanwhile");
                    repository.mark_contended(append.stream_id);
                    conflicted.insert(append.stream_id, actual);
                }
            }
        }
        appended
    };

    // 5. Replies, and the records of keyed commands.
    let mut to_record = Vec::new();
    for Plan { index, decided } in plans {
        let job = &jobs[index];
        let stream_id = job.stream_id();
        if let (Some(&actual), Some(expected)) =
            (conflicted.get(&stream_id), job.context().if_match)
        {
            // Under If-Match a lost race is the client's to resolve: 412, no retry.
            let mismatch = ApiError::VersionMismatch {
                stream_id,
                expected,
                actual,
            };
            refusals.push((index, mismatch, Vec::new()));
            continue;
        }
        if conflicted.contains_key(&stream_id)
            || decided
                .depends_on
                .iter()
                .any(|id| conflicted.contains_key(id))
        {
            outcomes[index] = Some(Outcome::Retry);
            continue;
        }
        let position = position_at(&staging, &appended, stream_id, decided.version_after);
        let reply = job.reply(decided.after, decided.version_after, position);
        match reply {
            Ok(reply) if job.context().idempotency.is_some() => to_record.push((index, reply)),
            other => outcomes[index] = Some(Outcome::Answer(other)),
        }
    }
    for (index, refusal, saw_staged) in refusals {
        if saw_staged.iter().any(|id| conflicted.contains_key(id)) {
            outcomes[index] = Some(Outcome::Retry);
            continue;
        }
        if !(refusal.is_recordable() && jobs[index].context().idempotency.is_some()) {
            outcomes[index] = Some(Outcome::Answer(Err(refusal)));
            continue;
        }
        let problem = refusal.problem();
        let body = serde_json::to_value(&problem)
            .map_err(|error| ApiError::Internal(format!("serializing a problem: {error}")))?;
        to_record.push((index, jobs[index].problem(problem.status_code(), body)));
    }
    let records: Vec<_> = to_record
        .iter()
        .map(|(index, reply)| {
            let request = jobs[*index]
                .context()
                .idempotency
                .as_ref()
                .expect("keyed job");
            (request, reply.status, &reply.body)
        })
        .collect();
    let stored = idempotency::record_all(&mut tx, &records, key_retention).await?;
    for ((index, mut reply), body) in to_record.into_iter().zip(stored) {
        reply.body = body;
        outcomes[index] = Some(Outcome::Answer(Ok(reply)));
    }

    // 6. Cache the new states, write due snapshots, commit.
    let snapshots = staging.finish(repository, &appended);
    eventstore::repository::save_snapshots(&mut tx, &snapshots)
        .await
        .map_err(|error| command_error(Uuid::nil(), error))?;
    tx.commit().await.during(|| "committing the batch".into())?;
    Ok(outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or(Outcome::Retry))
        .collect())
}

/// One append per changed stream, with its commands' events in batch order.
fn stream_appends(jobs: &[Box<dyn Job>], plans: &[Plan]) -> Vec<StreamAppend> {
    let mut appends: Vec<StreamAppend> = Vec::new();
    let mut slot: HashMap<Uuid, usize> = HashMap::new();
    for Plan { index, decided } in plans {
        if decided.events.is_empty() {
            continue;
        }
        let job = &jobs[*index];
        let stream_id = job.stream_id();
        let metadata = &job.context().metadata;
        let events = decided.events.iter().map(|e| (e.clone(), metadata.clone()));
        match slot.get(&stream_id) {
            Some(&at) => appends[at].events.extend(events),
            None => {
                let version_before = decided.version_after
                    - i64::try_from(decided.events.len()).expect("event counts fit in i64");
                slot.insert(stream_id, appends.len());
                appends.push(StreamAppend {
                    stream_type: job.stream_type(),
                    stream_id,
                    expected_version: version_before,
                    events: events.collect(),
                });
            }
        }
    }
    appends
}

/// The global position of the event at `version` of `stream_id`: appended
/// by this batch, or the last one before it.
fn position_at(
    staging: &Staging<'_>,
    appended: &HashMap<Uuid, Appended>,
    stream_id: Uuid,
    version: i64,
) -> i64 {
    appended
        .get(&stream_id)
        .and_then(|a| a.events.iter().find(|e| e.stream_version == version))
        .map(|e| e.global_position)
        .or_else(|| staging.base(stream_id).map(|(_, position)| position))
        .unwrap_or(0)
}
