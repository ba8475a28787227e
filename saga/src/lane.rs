//! One lane of the consumer: a task handling, strictly in the order
//! received, the messages of the orders routed to it. Several queued
//! messages are handled in one transaction ([`Handler::handle_batch`]); the
//! first that fails there is handled alone, as a single message always was
//! (conflict retries, bounded attempts with backoff, then the dead-letter
//! queue), and the rest go on in a new batch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use eventstore::EventEnvelope;

use crate::dead_letter::{DeadLetters, Letter};
use crate::handler::{BatchHandled, Handled, Handler};
use crate::offsets::Ticket;
use crate::routing::route;

/// A received message and what to do with it.
#[derive(Debug)]
pub struct Job {
    /// Given back to the consumer when the message is done.
    pub ticket: Ticket,
    /// The message.
    pub letter: Letter,
    /// What it is.
    pub kind: JobKind,
}

/// What a message is, decided when it is received.
#[derive(Debug)]
pub enum JobKind {
    /// An event the saga of `order_id` reacts to.
    Event {
        /// The event.
        envelope: Box<EventEnvelope>,
        /// Its order.
        order_id: Uuid,
    },
    /// An event the saga does not react to.
    Ignore,
    /// A message that cannot be handled: parked at once.
    Park {
        /// Why.
        reason: String,
        /// The event's id, if it parsed.
        event_id: Option<Uuid>,
    },
}

impl Job {
    /// Parses and routes `letter`. Returns the job and the key that picks
    /// its lane: the order id, or for a message of no known order a hash of
    /// where it came from.
    pub fn classify(letter: Letter, ticket: Ticket) -> (u128, Self) {
        let (key, kind) = match serde_json::from_str::<EventEnvelope>(&letter.payload) {
            Err(error) => (
                origin_key(&letter),
                JobKind::Park {
                    reason: format!("unparseable envelope: {error}"),
                    event_id: None,
                },
            ),
            Ok(envelope) => match route(&envelope) {
                Ok(Some((order_id, _))) => (
                    order_id.as_u128(),
                    JobKind::Event {
                        envelope: Box::new(envelope),
                        order_id,
                    },
                ),
                Ok(None) => (origin_key(&letter), JobKind::Ignore),
                Err(error) => (
                    origin_key(&letter),
                    JobKind::Park {
                        reason: format!("undecodable event: {error}"),
                        event_id: Some(envelope.event_id),
                    },
                ),
            },
        };
        (
            key,
            Self {
                ticket,
                letter,
                kind,
            },
        )
    }
}

/// A deterministic key for a message of no known order.
fn origin_key(letter: &Letter) -> u128 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    (&letter.topic, letter.partition, &letter.key).hash(&mut hasher);
    u128::from(hasher.finish())
}

/// An event job, unpacked.
struct EventJob {
    ticket: Ticket,
    letter: Letter,
    envelope: Box<EventEnvelope>,
    order_id: Uuid,
}

/// Retry tuning of a lane.
#[derive(Debug, Clone)]
pub struct Retries {
    /// Attempts before a message is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay.
    pub base: Duration,
    /// Longest retry delay.
    pub max: Duration,
}

/// Handles the jobs of one lane.
#[derive(Clone)]
pub struct Lane {
    /// The handler.
    pub handler: Arc<Handler>,
    /// Where failures are parked.
    pub dead_letters: Arc<DeadLetters>,
    /// Retries before parking.
    pub retries: Retries,
    /// Messages handled in one transaction at most.
    pub batch_size: usize,
    /// Wakes the effect runner.
    pub wake: Arc<Notify>,
    /// Where finished messages are reported.
    pub done: mpsc::UnboundedSender<Ticket>,
}

impl Lane {
    /// Handles `queue` until it closes or `shutdown`; a job interrupted by
    /// shutdown is not reported done.
    pub async fn run(self, mut queue: mpsc::Receiver<Job>, shutdown: CancellationToken) {
        let mut jobs = Vec::with_capacity(self.batch_size);
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => return,
                job = queue.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
            };
            jobs.push(first);
            while jobs.len() < self.batch_size {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            if !self.handle(jobs.drain(..), &shutdown).await {
                return;
            }
        }
    }

    /// Handles jobs received together. Returns `false` on shutdown.
    async fn handle(&self, jobs: impl Iterator<Item = Job>, shutdown: &CancellationToken) -> bool {
        let mut events = VecDeque::new();
        for job in jobs {
            match job.kind {
                JobKind::Ignore => self.finish(job.ticket),
                JobKind::Park { reason, event_id } => {
                    if !self
                        .park(&job.letter, &reason, 1, event_id, None, shutdown)
                        .await
                    {
                        return false;
                    }
                    self.finish(job.ticket);
                }
                JobKind::Event { envelope, order_id } => events.push_back(EventJob {
                    ticket: job.ticket,
                    letter: job.letter,
                    envelope,
                    order_id,
                }),
            }
        }
        while !events.is_empty() {
            if events.len() == 1 || self.batch_size <= 1 {
                let job = events.pop_front().expect("not empty");
                if !self.process_alone(job, shutdown).await {
                    return false;
                }
                continue;
            }
            if !self.handle_batch(&mut events, shutdown).await {
                return false;
            }
        }
        true
    }

    /// Handles a prefix of `events` in one transaction and removes what it
    /// finished (at least one event, unless shutdown: returns `false`).
    async fn handle_batch(
        &self,
        events: &mut VecDeque<EventJob>,
        shutdown: &CancellationToken,
    ) -> bool {
        let orders: Vec<Uuid> = events.iter().map(|job| job.order_id).collect();
        let blocked = match self.dead_letters.blocked(&orders).await {
            Ok(blocked) => blocked,
            Err(error) => {
                tracing::warn!(%error, "cannot check for dead letters; handling one at a time");
                let job = events.pop_front().expect("not empty");
                return self.process_alone(job, shutdown).await;
            }
        };
        if !blocked.is_empty() {
            // Parked behind their order's dead letter, one by one, as always.
            let (parked, ready) = std::mem::take(events)
                .into_iter()
                .partition::<VecDeque<_>, _>(|job| blocked.contains(&job.order_id));
            *events = ready;
            for job in parked {
                if !self.process_alone(job, shutdown).await {
                    return false;
                }
            }
            return true;
        }
        let envelopes: Vec<&EventEnvelope> = events.iter().map(|job| &*job.envelope).collect();
        match self.handler.handle_batch(&envelopes).await {
            Ok(BatchHandled { handled, failed }) => {
                for outcome in handled {
                    let job = events.pop_front().expect("one job per outcome");
                    self.handled(&outcome);
                    self.finish(job.ticket);
                }
                if let Some(error) = failed {
                    tracing::debug!(%error, "an event failed in a batch; handling it alone");
                    let job = events.pop_front().expect("the failed job");
                    return self.process_alone(job, shutdown).await;
                }
                true
            }
            Err(error) => {
                tracing::debug!(%error, "a batch failed; handling its events one at a time");
                while let Some(job) = events.pop_front() {
                    if !self.process_alone(job, shutdown).await {
                        return false;
                    }
                }
                true
            }
        }
    }

    /// Handles one event in its own transaction until it is done or
    /// parked, and reports it. Returns `false` on shutdown.
    async fn process_alone(&self, job: EventJob, shutdown: &CancellationToken) -> bool {
        if !self.process(&job, shutdown).await {
            return false;
        }
        self.finish(job.ticket);
        true
    }

    /// Handles one event until it is done or parked. Returns `false` if
    /// shutdown interrupted it.
    async fn process(&self, job: &EventJob, shutdown: &CancellationToken) -> bool {
        let (letter, order_id, event_id) = (&job.letter, job.order_id, job.envelope.event_id);
        let mut attempts = 0;
        let mut delay = self.retries.base;
        loop {
            let parked = self
                .dead_letters
                .park_behind(letter, event_id, order_id)
                .await;
            match parked {
                Ok(Some(_)) => return true,
                Ok(None) => match self.handler.handle(&job.envelope).await {
                    Ok(outcome) => {
                        self.handled(&outcome);
                        return true;
                    }
                    Err(error) if error.is_unavailable() => {
                        tracing::warn!(%error, "database unavailable; waiting");
                    }
                    Err(error) => {
                        attempts += 1;
                        tracing::warn!(%error, attempts, "saga handler failed");
                        if attempts >= self.retries.max_attempts {
                            let reason = error.to_string();
                            return self
                                .park(
                                    letter,
                                    &reason,
                                    attempts,
                                    Some(event_id),
                                    Some(order_id),
                                    shutdown,
                                )
                                .await;
                        }
                    }
                },
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "cannot check for dead letters; retrying");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(self.retries.max);
        }
    }

    /// Parks the message, retrying until it is parked. Returns `false` on shutdown.
    async fn park(
        &self,
        letter: &Letter,
        reason: &str,
        attempts: u32,
        event_id: Option<Uuid>,
        order_id: Option<Uuid>,
        shutdown: &CancellationToken,
    ) -> bool {
        loop {
            match self
                .dead_letters
                .park(letter, reason, attempts, event_id, order_id)
                .await
            {
                Ok(()) => return true,
                Err(error) => {
                    tracing::warn!(%error, "cannot dead-letter the message yet; retrying")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(self.retries.max) => {}
            }
        }
    }

    /// Wakes the effect runner if the saga now has a provider call due.
    fn handled(&self, outcome: &Handled) {
        if matches!(
            outcome,
            Handled::Applied {
                effect_due: true,
                ..
            }
        ) {
            self.wake.notify_one();
        }
    }

    fn finish(&self, ticket: Ticket) {
        // The consumer is gone only when shutting down: nothing to store then.
        let _ = self.done.send(ticket);
    }
}
