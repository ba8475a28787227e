//! Batches: drain what Kafka has ready, apply each partition's share in one
//! transaction (partitions in parallel), then store that partition's offset.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::{BorrowedMessage, Message};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{project_batch, Consumer};
use crate::apply::Verdict;
use crate::projection::{self, Decoded};

/// One message taken from Kafka.
pub(super) struct Delivery {
    topic: String,
    partition: i32,
    offset: i64,
    /// The decoded envelope and its correlation id, or why the message is not one.
    event: Result<(Decoded, Uuid), String>,
}

impl Delivery {
    fn new(message: &BorrowedMessage<'_>) -> Self {
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
            event,
        }
    }
}

impl Consumer {
    /// Waits for a message, then takes whatever else is ready (up to the
    /// batch size, waiting at most the linger). `None` on shutdown.
    pub(super) async fn poll(&self, shutdown: &CancellationToken) -> Option<Vec<Delivery>> {
        let mut stream = self.consumer.stream();
        let mut batch = Vec::new();
        while batch.is_empty() {
            tokio::select! {
                () = shutdown.cancelled() => return None,
                message = stream.next() => match message {
                    Some(Ok(message)) => batch.push(Delivery::new(&message)),
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
                Ok(Some(Ok(message))) => batch.push(Delivery::new(&message)),
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
    pub(super) async fn process(&self, batch: Vec<Delivery>, shutdown: &CancellationToken) -> bool {
        let mut partitions: BTreeMap<(String, i32), Vec<Delivery>> = BTreeMap::new();
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

    /// Applies one partition's messages in one transaction, retrying
    /// database failures, then stores the partition's offset.
    async fn process_partition(&self, share: Vec<Delivery>, shutdown: &CancellationToken) -> bool {
        let (topic, partition) = (share[0].topic.clone(), share[0].partition);
        let last = share.iter().map(|d| d.offset).max().unwrap_or_default();
        let mut events = Vec::with_capacity(share.len());
        let mut origins = Vec::with_capacity(share.len());
        let (mut committed, mut skipped) = (0, 0);
        for delivery in share {
            match delivery.event {
                Err(reason) => {
                    tracing::error!(
                        topic, partition, offset = delivery.offset, %reason,
                        "skipping a message that is not an event"
                    );
                    crate::metrics::record_outcome(&topic, "undecodable", 1);
                    skipped += 1;
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
                    origins.push((delivery.offset, event.event_id, correlation_id));
                    events.push(event);
                }
            }
        }
        if !events.is_empty() {
            let Some(verdicts) = self.apply_with_retries(&events, shutdown).await else {
                return false;
            };
            crate::metrics::record_batch(&topic, &events, &verdicts);
            crate::metrics::record_batch_size(events.len());
            for (verdict, (offset, event_id, correlation_id)) in verdicts.iter().zip(&origins) {
                if let Verdict::Rejected(error) = verdict {
                    tracing::error!(
                        %error, topic, partition, offset, %event_id, %correlation_id,
                        "skipping an event that cannot be projected"
                    );
                    skipped += 1;
                } else {
                    committed += 1;
                }
            }
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.committed.fetch_add(committed, Ordering::Relaxed);
        self.stats.skipped.fetch_add(skipped, Ordering::Relaxed);
        if let Err(error) = self.consumer.store_offset(&topic, partition, last) {
            // The partition was revoked meanwhile; its new owner redelivers.
            tracing::warn!(%error, topic, partition, "cannot store the offset");
        }
        true
    }

    /// Applies `events` until a transaction commits; `None` on shutdown.
    async fn apply_with_retries(
        &self,
        events: &[Decoded],
        shutdown: &CancellationToken,
    ) -> Option<Vec<Verdict>> {
        let mut backoff = self.settings.retry_initial_backoff;
        let mut attempt: u32 = 1;
        loop {
            match project_batch(&self.pool, events).await {
                Ok(verdicts) => return Some(verdicts),
                Err(error) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        %error, attempt, events = events.len(),
                        retry_in_ms = backoff.as_millis() as u64,
                        "cannot apply a batch; retrying"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.settings.retry_max_backoff);
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }
}
