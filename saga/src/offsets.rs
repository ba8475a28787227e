//! Which Kafka offsets may be stored while messages of one partition finish
//! out of order (they run in different lanes): a partition's offset moves
//! only over the prefix of its received messages that are all done.
//!
//! Revoking a partition drops its tracking; messages of it still in a lane
//! then finish without storing anything (their ticket names an older
//! generation), and whoever owns the partition next redelivers them.

use std::collections::{HashMap, VecDeque};

/// A topic and partition.
pub type TopicPartition = (String, i32);

/// Handed out with each received message; given back when it is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    partition: TopicPartition,
    generation: u64,
    offset: i64,
}

impl Ticket {
    /// The message's offset.
    pub fn offset(&self) -> i64 {
        self.offset
    }
}

#[derive(Debug)]
struct Partition {
    generation: u64,
    /// Received messages not yet released, in offset order, with whether
    /// each is done.
    pending: VecDeque<(i64, bool)>,
    /// The highest offset received.
    last_received: Option<i64>,
}

/// Per partition, the received messages and which are done.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<TopicPartition, Partition>,
    generations: u64,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the message at `offset` of `topic`/`partition` was
    /// received. An offset at or below one already received (the partition
    /// was rewound, e.g. reassigned) starts the partition afresh.
    pub fn received(&mut self, topic: &str, partition: i32, offset: i64) -> Ticket {
        let key = (topic.to_owned(), partition);
        let rewound = self
            .partitions
            .get(&key)
            .and_then(|p| p.last_received)
            .is_some_and(|last| offset <= last);
        if rewound {
            self.partitions.remove(&key);
        }
        let generations = &mut self.generations;
        let entry = self.partitions.entry(key.clone()).or_insert_with(|| {
            *generations += 1;
            Partition {
                generation: *generations,
                pending: VecDeque::new(),
                last_received: None,
            }
        });
        entry.pending.push_back((offset, false));
        entry.last_received = Some(offset);
        Ticket {
            partition: key,
            generation: entry.generation,
            offset,
        }
    }

    /// Records that the ticket's message is done. Returns the partition and
    /// the highest offset whose message and every message before it are
    /// done, when that moved forward; `None` if it did not, or if the
    /// ticket's partition was revoked (or rewound) since.
    pub fn done(&mut self, ticket: &Ticket) -> Option<(TopicPartition, i64)> {
        let partition = self.partitions.get_mut(&ticket.partition)?;
        if partition.generation != ticket.generation {
            return None;
        }
        let index = partition
            .pending
            .binary_search_by_key(&ticket.offset, |(offset, _)| *offset)
            .ok()?;
        partition.pending[index].1 = true;
        let mut released = None;
        while let Some(&(offset, true)) = partition.pending.front() {
            released = Some(offset);
            partition.pending.pop_front();
        }
        released.map(|offset| (ticket.partition.clone(), offset))
    }

    /// Forgets a partition we no longer own.
    pub fn revoke(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_owned(), partition));
    }

    /// Messages received and not yet released, over every partition.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "orders";

    fn tp(partition: i32) -> TopicPartition {
        (T.to_owned(), partition)
    }

    #[test]
    fn out_of_order_completions_release_only_the_done_prefix() {
        let mut tracker = OffsetTracker::new();
        let tickets: Vec<Ticket> = (10..15).map(|o| tracker.received(T, 0, o)).collect();
        assert_eq!(tracker.done(&tickets[2]), None, "12 done, 10 and 11 not");
        assert_eq!(tracker.done(&tickets[1]), None, "11 done, 10 not");
        assert_eq!(tracker.done(&tickets[0]), Some((tp(0), 12)), "10..=12 done");
        assert_eq!(tracker.done(&tickets[4]), None, "13 not done");
        assert_eq!(tracker.done(&tickets[3]), Some((tp(0), 14)));
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn gaps_in_offsets_do_not_hold_the_partition_back() {
        let mut tracker = OffsetTracker::new();
        let a = tracker.received(T, 0, 3);
        let b = tracker.received(T, 0, 7);
        assert_eq!(tracker.done(&b), None);
        assert_eq!(tracker.done(&a), Some((tp(0), 7)));
    }

    #[test]
    fn partitions_are_independent() {
        let mut tracker = OffsetTracker::new();
        let a0 = tracker.received(T, 0, 0);
        let b0 = tracker.received(T, 1, 0);
        let b1 = tracker.received(T, 1, 1);
        let other = tracker.received("payments", 0, 0);
        assert_eq!(tracker.done(&b1), None);
        assert_eq!(tracker.done(&b0), Some((tp(1), 1)));
        assert_eq!(tracker.done(&other), Some((("payments".to_owned(), 0), 0)));
        assert_eq!(tracker.in_flight(), 1);
        assert_eq!(tracker.done(&a0), Some((tp(0), 0)));
    }

    #[test]
    fn a_revoked_partition_stores_nothing_for_messages_still_in_flight() {
        let mut tracker = OffsetTracker::new();
        let old = tracker.received(T, 0, 5);
        let other = tracker.received(T, 1, 5);
        tracker.revoke(T, 0);
        assert_eq!(tracker.done(&old), None, "no longer ours");
        assert_eq!(tracker.done(&other), Some((tp(1), 5)), "others unaffected");

        // Assigned again: redelivered from the committed offset.
        let old = tracker.received(T, 0, 6);
        let again = tracker.received(T, 0, 5);
        assert_eq!(tracker.done(&old), None, "from before the rewind");
        assert_eq!(tracker.done(&again), Some((tp(0), 5)));
    }

    #[test]
    fn a_rewind_without_a_revocation_starts_afresh() {
        let mut tracker = OffsetTracker::new();
        let first = tracker.received(T, 0, 8);
        let second = tracker.received(T, 0, 9);
        let replayed = tracker.received(T, 0, 8);
        assert_eq!(tracker.done(&second), None);
        assert_eq!(tracker.done(&first), None);
        assert_eq!(tracker.done(&replayed), Some((tp(0), 8)));
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn a_ticket_done_twice_changes_nothing() {
        let mut tracker = OffsetTracker::new();
        let a = tracker.received(T, 0, 1);
        let b = tracker.received(T, 0, 2);
        assert_eq!(tracker.done(&a), Some((tp(0), 1)));
        assert_eq!(tracker.done(&a), None);
        assert_eq!(tracker.done(&b), Some((tp(0), 2)));
    }
}
