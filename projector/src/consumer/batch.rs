//! Batches: drain what Kafka has ready, apply each partition's share in one
//! transaction (partitions in parallel), park what cannot be applied, then
//! store that partition's offset.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::{BorrowedMessage, Message};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{project_batch, Consumer};
use crate::apply::{ApplyError, Verdict};
use crate::dead_letter::{self, Blockers, Letter, Subject};
use crate::projection::{self, Decoded};

/// One message taken from Kafka.
pub(super) struct Delivery<'a> {
    topic: String,
    partition: i32,
    offset: i64,
    /// The message, kept (borrowed from the consumer, not copied) to be
    /// parked if need be.
    message: BorrowedMessage<'a>,
    /// The decoded envelope and its correlation id, or why the message is not one.
    event: Result<(Decoded, Uuid), String>,
}

impl<'a> Delivery<'a> {
    fn new(message: BorrowedMessage<'a>) -> Self {
        let event = match message.payload() {
            Some(payload) => Decoded::from_json(payload)
                .map(|(event, metadata)| (event, metadata.correlation_id))
                .map_err(|error| format!("not an event envelope: {error}")),
            None => Err("a message without a value".to_owned()),
        };
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            message,
            event,
        }
    }
}

impl Consumer {
    /// Waits for a message, then takes whatever else is ready (up to the
    /// batch size, waiting at most the linger). `None` on shutdown.
    pub(super) async fn poll(&self, shutdown: &CancellationToken) -> Option<Vec<Delivery<'_>>> {
        let mut stream = self.consumer.stream();
        let mut batch = Vec::new();
        while batch.is_empty() {
            tokio::select! {
                () = shutdown.cancelled() => return None,
                message = stream.next() => match message {
                    Some(Ok(message)) => batch.push(Delivery::new(message)),
                    Some(Err(error)) => {
                        tracing::warn!(%error, "kafka consumer error");
                        tokio::select! {
                            () = shutdown.cancelled() => return None,
                            () = tokio::time::sleep(Duration::from_millis(200)) => {}
                        }
                    }
                    None => return None,
                },
            }
        }
        let deadline = Instant::now() + self.settings.batch_linger;
        while batch.len() < self.settings.batch_max_messages.max(1) {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(message))) => batch.push(Delivery::new(message)),
                Ok(Some(Err(error))) => {
                    tracing::warn!(%error, "kafka consumer error");
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        self.stats
            .received
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        Some(batch)
    }

    /// Applies a batch, each partition's share in its own transaction, all
    /// at once. `false` if shutdown interrupted a retry.
    pub(super) async fn process(
        &self,
        batch: Vec<Delivery<'_>>,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut partitions: BTreeMap<(String, i32), Vec<Delivery<'_>>> = BTreeMap::new();
        for delivery in batch {
            partitions
                .entry((delivery.topic.clone(), delivery.partition))
                .or_default()
                .push(delivery);
        }
        let done = futures::future::join_all(
            partitions
                .into_values()
                .map(|share| self.process_partition(share, shutdown)),
        )
        .await;
        done.into_iter().all(|done| done)
    }

    /// Applies one partition's messages, then stores the partition's
    /// offset, in four steps:
    ///
    /// 1. a message that is not an event is parked at once;
    /// 2. an event of a stream with a parked letter (one parked before, or
    ///    in step 1 at a lower offset) is parked behind it;
    /// 3. the rest is applied in one transaction, database failures retried;
    /// 4. an event that could not be applied (and those behind it in its
    ///    stream) is tried again on its own, the rest being committed, up to
    ///    `max_attempts` in all, then parked, the later ones behind it.
    ///
    /// The offset is stored only once every park row is committed; parking
    /// is idempotent per offset, so a redelivery parks nothing twice.
    /// `false` if shutdown interrupted a retry.
    async fn process_partition(
        &self,
        share: Vec<Delivery<'_>>,
        shutdown: &CancellationToken,
    ) -> bool {
        let (topic, partition) = (share[0].topic.clone(), share[0].partition);
        let last = share.iter().map(|d| d.offset).max().unwrap_or_default();
        let (mut committed, mut parked) = (0, 0);
        let mut candidates = Vec::with_capacity(share.len());
        for delivery in share {
            match delivery.event {
                Err(reason) => {
                    crate::metrics::record_outcome(&topic, "undecodable", 1);
                    let letter = Letter::from_message(&delivery.message);
                    let subject = Subject::of_letter(&letter);
                    let reason = format!("undecodable: {reason}");
                    if self
                        .park(&letter, &subject, &reason, 1, shutdown)
                        .await
                        .is_none()
                    {
                        return false;
                    }
                    parked += 1;
                }
                Ok((event, _))
                    if projection::interested_in(&event.stream_type)
                        .next()
                        .is_none() =>
                {
                    crate::metrics::record_outcome(&topic, "ignored", 1);
                    committed += 1;
                }
                Ok((event, correlation_id)) => {
                    candidates.push((delivery.message, event, correlation_id));
                }
            }
        }

        let mut streams: Vec<Uuid> = candidates.iter().map(|(_, e, _)| e.stream_id).collect();
        streams.sort_unstable();
        streams.dedup();
        let blockers = if streams.is_empty() {
            Blockers::default()
        } else {
            let found = self
                .retrying("checking for parked streams", shutdown, || {
                    self.dead_letters.blockers(&streams)
                })
                .await;
            let Some(blockers) = found else {
                return false;
            };
            blockers
        };
        let (mut messages, mut events, mut correlations) = (Vec::new(), Vec::new(), Vec::new());
        for (message, event, correlation_id) in candidates {
            let offset = message.offset();
            if blockers
                .blocker(event.stream_id, &topic, partition, offset)
                .is_some()
            {
                // Held back, unless a re-drive freed the stream meanwhile.
                let letter = Letter::from_message(&message);
                let subject = Subject::of_event(&event);
                let behind = self
                    .retrying("parking a dead letter", shutdown, || {
                        self.dead_letters
                            .park_behind(&letter, &subject, event.stream_id)
                    })
                    .await;
                match behind {
                    None => return false,
                    Some(Some(_)) => {
                        crate::metrics::record_outcome(&topic, "blocked", 1);
                        parked += 1;
                        continue;
                    }
                    Some(None) => {}
                }
            }
            messages.push(message);
            events.push(event);
            correlations.push(correlation_id);
        }

        if !events.is_empty() {
            let Some(verdicts) = self.apply_poison_bounded(&events, shutdown).await else {
                return false;
            };
            crate::metrics::record_batch(&topic, &events, &verdicts);
            crate::metrics::record_batch_size(events.len());
            // Per stream, in version order: the first rejected event is the
            // poison, the later ones wait behind it.
            let mut rejected: Vec<(usize, &ApplyError)> = verdicts
                .iter()
                .enumerate()
                .filter_map(|(i, verdict)| match verdict {
                    Verdict::Rejected(error) => Some((i, error)),
                    _ => None,
                })
                .collect();
            committed += (events.len() - rejected.len()) as u64;
            rejected.sort_by_key(|(i, _)| {
                (
                    events[*i].stream_id,
                    events[*i].stream_version,
                    messages[*i].offset(),
                )
            });
            let mut poison: HashMap<Uuid, i64> = HashMap::new();
            for (i, error) in rejected {
                let (event, message) = (&events[i], &messages[i]);
                let letter = Letter::from_message(message);
                let subject = Subject::of_event(event);
                let (reason, attempts) = match poison.get(&event.stream_id) {
                    Some(blocker) => (dead_letter::blocked_reason(*blocker), 0),
                    None => (error.to_string(), self.settings.max_attempts.max(1)),
                };
                tracing::warn!(
                    %error, topic, partition, offset = message.offset(), event_id = %event.event_id,
                    correlation_id = %correlations[i], "parking an event that cannot be projected"
                );
                let Some(id) = self
                    .park(&letter, &subject, &reason, attempts, shutdown)
                    .await
                else {
                    return false;
                };
                poison.entry(event.stream_id).or_insert(id);
                parked += 1;
            }
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.committed.fetch_add(committed, Ordering::Relaxed);
        self.stats.parked.fetch_add(parked, Ordering::Relaxed);
        if let Err(error) = self.consumer.store_offset(&topic, partition, last) {
            // The partition was revoked meanwhile; its new owner redelivers.
            tracing::warn!(%error, topic, partition, "cannot store the offset");
        }
        true
    }

    /// Applies `events`; the ones rejected (poison, and what is behind it
    /// in its stream) are tried again on their own, everything else being
    /// committed, until `max_attempts` tries in all. Only database failures
    /// are transient (and retried with backoff by [`Self::apply_with_retries`]);
    /// a rejection is a verdict on the event and the code, so the tries
    /// follow at once rather than hold up the next batch. Returns the final
    /// verdicts; `None` on shutdown.
    async fn apply_poison_bounded(
        &self,
        events: &[Decoded],
        shutdown: &CancellationToken,
    ) -> Option<Vec<Verdict>> {
        let mut verdicts = self.apply_with_retries(events, shutdown).await?;
        for attempt in 2..=self.settings.max_attempts {
            let again: Vec<usize> = (0..verdicts.len())
                .filter(|i| matches!(verdicts[*i], Verdict::Rejected(_)))
                .collect();
            if again.is_empty() {
                break;
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                events = again.len(),
                attempt,
                "events cannot be projected; trying them again on their own"
            );
            let retried: Vec<Decoded> = again.iter().map(|i| events[*i].clone()).collect();
            let outcome = self.apply_with_retries(&retried, shutdown).await?;
            for (i, verdict) in again.into_iter().zip(outcome) {
                verdicts[i] = verdict;
            }
        }
        Some(verdicts)
    }

    /// Applies `events` until a transaction commits; `None` on shutdown.
    async fn apply_with_retries(
        &self,
        events: &[Decoded],
        shutdown: &CancellationToken,
    ) -> Option<Vec<Verdict>> {
        self.retrying("applying a batch", shutdown, || {
            project_batch(&self.pool, events)
        })
        .await
    }

    /// Parks a message, retrying until it is parked; its id, `None` on shutdown.
    async fn park(
        &self,
        letter: &Letter,
        subject: &Subject,
        reason: &str,
        attempts: u32,
        shutdown: &CancellationToken,
    ) -> Option<i64> {
        self.retrying("parking a dead letter", shutdown, || {
            self.dead_letters.park(letter, subject, reason, attempts)
        })
        .await
        .map(|parked| parked.id)
    }

    /// Runs `attempt` until it succeeds, with capped exponential backoff
    /// between failures (transient: the database or Kafka); `None` on shutdown.
    async fn retrying<T, E, F, Fut>(
        &self,
        what: &str,
        shutdown: &CancellationToken,
        mut attempt: F,
    ) -> Option<T>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut backoff = self.settings.retry_initial_backoff;
        let mut tries: u32 = 1;
        loop {
            match attempt().await {
                Ok(value) => return Some(value),
                Err(error) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        %error, attempt = tries, retry_in_ms = backoff.as_millis() as u64,
                        "{what} failed; retrying"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.settings.retry_max_backoff);
                    tries = tries.saturating_add(1);
                }
            }
        }
    }
}
