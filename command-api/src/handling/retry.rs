//! How often and how patiently a command is retried after losing an
//! optimistic-concurrency race.
//!
//! The first attempt is purely optimistic. Later attempts also load the
//! stream under its row lock (`SELECT … FOR UPDATE` on `eventstore.streams`,
//! the lock the append itself takes), so a retry waits for the current
//! writer instead of racing it again: under heavy contention on one stream
//! every request still finishes within a couple of attempts, while the
//! common uncontended case never takes the lock early.

use std::time::Duration;

use uuid::Uuid;

/// Attempts per command and the backoff between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1).
    pub max_attempts: u32,
    /// Upper bound of the backoff before the second attempt; doubles after each retry.
    pub base_delay: Duration,
    /// Largest backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(4),
            max_delay: Duration::from_millis(50),
        }
    }
}

impl RetryPolicy {
    /// Whether another attempt may follow attempt number `attempt` (1-based).
    pub fn may_retry(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The pause after failed attempt number `attempt`: uniformly random in
    /// `[cap / 2, cap]` with `cap = min(base * 2^(attempt-1), max)`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let cap = self
            .base_delay
            .saturating_mul(1 << exponent)
            .min(self.max_delay);
        let cap_micros = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX).max(2);
        let half = cap_micros / 2;
        Duration::from_micros(half + random_below(cap_micros - half + 1))
    }
}

/// A random number in `0..bound` (`bound > 0`), from the OS generator behind UUIDv4.
fn random_below(bound: u64) -> u64 {
    let bits = Uuid::new_v4().as_u64_pair().0;
    bits % bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_attempts_by_default() {
        let policy = RetryPolicy::default();
        assert!(policy.may_retry(4));
        assert!(!policy.may_retry(5));
    }

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let policy = RetryPolicy::default();
        for attempt in 1..=10 {
            let cap = (policy.base_delay * (1 << (attempt - 1).min(16))).min(policy.max_delay);
            for _ in 0..50 {
                let delay = policy.backoff(attempt);
                assert!(delay >= cap / 2 && delay <= cap, "{attempt}: {delay:?}");
            }
        }
    }
}
