//! Kafka as the saga worker sees it: the relay copying the outbox into
//! topic partitions in log order (key = stream id, so one stream stays in
//! one partition, in order), and the consumer: per partition a fetch
//! position and a committed offset, lanes by order id, and the real
//! `saga::offsets::OffsetTracker` deciding which offsets may be committed.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use domain::saga::SagaInput;
use eventstore::EventEnvelope;
use saga::offsets::{OffsetTracker, Ticket};
use uuid::Uuid;

/// Partitions per topic.
pub const PARTITIONS: u128 = 2;
/// Lanes of the consumer.
pub const LANES: usize = 3;

/// A topic and partition.
pub type Tp = (String, i32);

/// One partition.
#[derive(Debug, Default)]
pub struct Partition {
    /// Every message, by offset.
    pub messages: Vec<EventEnvelope>,
    /// The next offset the consumer fetches.
    pub fetched: usize,
    /// The committed offset: where a restarted consumer starts.
    pub committed: usize,
    /// Nothing is fetched before this (a slow broker / consumer lag).
    pub paused_until: Option<DateTime<Utc>>,
}

/// A message in a lane, routed to its saga.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub ticket: Ticket,
    pub event: EventEnvelope,
    pub order_id: Uuid,
    pub input: SagaInput,
}

/// The relay, the topics and the consumer.
#[derive(Debug)]
pub struct Bus {
    /// Log entries before this index are published (the rest is the outbox).
    pub published: usize,
    /// The relay publishes nothing before this.
    pub relay_paused_until: Option<DateTime<Utc>>,
    pub partitions: BTreeMap<Tp, Partition>,
    pub tracker: OffsetTracker,
    pub lanes: Vec<VecDeque<Delivery>>,
}

impl Default for Bus {
    fn default() -> Self {
        Self {
            published: 0,
            relay_paused_until: None,
            partitions: BTreeMap::new(),
            tracker: OffsetTracker::new(),
            lanes: vec![VecDeque::new(); LANES],
        }
    }
}

impl Bus {
    /// Publishes `event` to its topic's partition.
    pub fn publish(&mut self, event: &EventEnvelope) -> (Tp, usize) {
        let partition = i32::try_from(event.stream_id.as_u128() % PARTITIONS).unwrap();
        let tp = (event.stream_type.clone(), partition);
        let p = self.partitions.entry(tp.clone()).or_default();
        p.messages.push(event.clone());
        (tp, p.messages.len() - 1)
    }

    /// Partitions with a message to fetch at `now`.
    pub fn fetchable(&self, now: DateTime<Utc>) -> Vec<Tp> {
        self.partitions
            .iter()
            .filter(|(_, p)| {
                p.fetched < p.messages.len() && p.paused_until.is_none_or(|t| t <= now)
            })
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Records that the ticket's message is done; commits what that allows.
    pub fn done(&mut self, ticket: &Ticket) {
        if let Some((tp, offset)) = self.tracker.done(ticket) {
            let p = self.partitions.get_mut(&tp).expect("known partition");
            p.committed = p.committed.max(usize::try_from(offset).unwrap() + 1);
        }
    }

    /// The partition is taken away and assigned again: its tracking is
    /// dropped and it is fetched again from the committed offset.
    pub fn rewind(&mut self, tp: &Tp) {
        self.tracker.revoke(&tp.0, tp.1);
        let p = self.partitions.get_mut(tp).expect("known partition");
        p.fetched = p.committed;
    }

    /// Partitions fetched past their committed offset.
    pub fn uncommitted(&self) -> Vec<Tp> {
        self.partitions
            .iter()
            .filter(|(_, p)| p.committed < p.fetched)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// The worker died: lanes and tracking gone, every partition fetched
    /// again from its committed offset.
    pub fn crash(&mut self) {
        self.tracker = OffsetTracker::new();
        for lane in &mut self.lanes {
            lane.clear();
        }
        for p in self.partitions.values_mut() {
            p.fetched = p.committed;
        }
    }

    /// Whether everything published was consumed and committed.
    pub fn drained(&self, log_len: usize) -> bool {
        self.published == log_len
            && self.lanes.iter().all(VecDeque::is_empty)
            && self
                .partitions
                .values()
                .all(|p| p.committed == p.messages.len())
    }
}
