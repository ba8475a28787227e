//! A circuit breaker with an injectable clock.
//!
//! Closed: calls go through; it opens on a failure that leaves, among the
//! calls of the last `window`, at least `failure_threshold` failures making
//! up at least `failure_percent` of them. A call is reported once, with its
//! retries (`HttpPaymentProvider` does so), so the retries of one request
//! the provider keeps failing do not outweigh every other call. Open: calls fail fast until
//! `cooldown` has passed. Then up to [`HALF_OPEN_PROBES`] new calls are let
//! through as half-open probes: the first success closes the breaker (with
//! an empty window); when every probe has failed it opens again. Retries of
//! a call that already failed are never probes: they only go through a
//! closed breaker. Probes that never report back (their callers were
//! cancelled) are replaced after another `cooldown`.
//!
//! Why a share of a time window rather than consecutive failures: a failure
//! can belong to one request (a card the provider never charges, a charge
//! it holds) rather than to the provider. Under a normal mix of such cards,
//! runs of a few failures in a row come every few seconds, and a breaker
//! that opened on five in a row was open about half the time with the
//! provider healthy (found by the chaos run; see the
//! `failing_cards_in_a_healthy_mix_do_not_open_the_breaker` test). A
//! provider that is down fails every call, so the share reaches any
//! threshold within one window, and at once when nothing else was called.
//!
//! Why several probes, and no retries among them: with one probe, taken as
//! often as not by the retry of such a request, a backlog of them kept the
//! breaker open for every order (see the
//! `failing_requests_cannot_hold_the_breaker_open` test).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where time comes from (tests inject a fake one).
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// When the breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures within `window` that open the breaker (at least 1), if
    /// they are also `failure_percent` of its calls.
    pub failure_threshold: u32,
    /// Share of the window's calls that must have failed (1–100 %).
    pub failure_percent: u32,
    /// How far back calls count (split into [`WINDOW_BUCKETS`] buckets).
    pub window: Duration,
    /// How long it stays open before probes are let through.
    pub cooldown: Duration,
}

/// Buckets the window is counted in: a call leaves the window within
/// `window / WINDOW_BUCKETS` of its age reaching `window`.
pub const WINDOW_BUCKETS: usize = 10;

/// The breaker's state, for observability and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail fast.
    Open,
    /// Probe calls are in flight; other calls fail fast.
    HalfOpen,
}

/// Calls let through a half-open breaker before it decides.
pub const HALF_OPEN_PROBES: u32 = 3;

/// Calls and failures in one slice of the window.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which slice of time since the breaker's origin it counts.
    slice: u64,
    calls: u32,
    failures: u32,
}

/// The closed breaker's recent calls, in a ring of time slices.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    buckets: [Bucket; WINDOW_BUCKETS],
}

impl Window {
    /// Counts a call in `slice`, then returns the calls and failures of the
    /// window that ends with it.
    fn record(&mut self, slice: u64, failed: bool) -> (u32, u32) {
        let bucket = &mut self.buckets[(slice % WINDOW_BUCKETS as u64) as usize];
        if bucket.slice != slice || bucket.calls == 0 {
            *bucket = Bucket {
                slice,
                ..Bucket::default()
            };
        }
        bucket.calls += 1;
        bucket.failures += u32::from(failed);
        self.buckets
            .iter()
            .filter(|b| b.calls > 0 && b.slice + WINDOW_BUCKETS as u64 > slice && b.slice <= slice)
            .fold((0, 0), |(calls, failures), b| {
                (calls + b.calls, failures + b.failures)
            })
    }
}

#[derive(Debug, Clone, Copy)]
enum Inner {
    Closed {
        window: Window,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        probe_started: Instant,
        admitted: u32,
        failed: u32,
    },
}

/// A thread-safe circuit breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    /// Where the window's time slices are counted from.
    origin: Instant,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker reading time from `clock`.
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config: BreakerConfig {
                failure_threshold: config.failure_threshold.max(1),
                failure_percent: config.failure_percent.clamp(1, 100),
                window: config
                    .window
                    .max(Duration::from_millis(WINDOW_BUCKETS as u64)),
                ..config
            },
            origin: clock.now(),
            clock,
            inner: Mutex::new(Inner::Closed {
                window: Window::default(),
            }),
        }
    }

    /// Asks to make a new call: `Ok` to go ahead (possibly as a half-open
    /// probe), `Err(retry_after)` to fail fast.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let probe_ends = |started: Instant| started + self.config.cooldown;
        match *inner {
            Inner::Closed { .. } => Ok(()),
            Inner::Open { until } if now < until => Err(until - now),
            Inner::HalfOpen {
                probe_started,
                admitted,
                failed,
            } if now < probe_ends(probe_started) => {
                if admitted < HALF_OPEN_PROBES {
                    *inner = Inner::HalfOpen {
                        probe_started,
                        admitted: admitted + 1,
                        failed,
                    };
                    Ok(())
                } else {
                    Err(probe_ends(probe_started) - now)
                }
            }
            Inner::Open { .. } | Inner::HalfOpen { .. } => {
                *inner = Inner::HalfOpen {
                    probe_started: now,
                    admitted: 1,
                    failed: 0,
                };
                Ok(())
            }
        }
    }

    /// Asks to retry a call that failed: only a closed breaker lets it
    /// through (a retry is never a probe).
    pub fn try_acquire_retry(&self) -> Result<(), Duration> {
        let now = self.clock.now();
        match *self.lock() {
            Inner::Closed { .. } => Ok(()),
            Inner::Open { until } => Err(until.saturating_duration_since(now)),
            Inner::HalfOpen { probe_started, .. } => {
                Err((probe_started + self.config.cooldown).saturating_duration_since(now))
            }
        }
    }

    /// Reports a call that reached the provider and got an answer.
    pub fn record_success(&self) {
        let slice = self.slice(self.clock.now());
        let mut inner = self.lock();
        match &mut *inner {
            Inner::Closed { window } => {
                window.record(slice, false);
            }
            // A probe answered: the provider is back, and what failed before
            // it says nothing about it now.
            Inner::HalfOpen { .. } => {
                *inner = Inner::Closed {
                    window: Window::default(),
                };
            }
            // A late answer to a call let through before the breaker opened
            // says nothing about the provider now.
            Inner::Open { .. } => {}
        }
    }

    /// Reports a call that failed for the provider's sake (unavailable,
    /// timeout), after whatever retries it was allowed.
    pub fn record_failure(&self) {
        let now = self.clock.now();
        let slice = self.slice(now);
        let mut inner = self.lock();
        let open = Inner::Open {
            until: now + self.config.cooldown,
        };
        *inner = match *inner {
            Inner::Closed { mut window } => {
                let (calls, failures) = window.record(slice, true);
                if self.trips(calls, failures) {
                    tracing::warn!(
                        cooldown_ms = self.config.cooldown.as_millis(),
                        calls,
                        failures,
                        "payment provider circuit opened"
                    );
                    open
                } else {
                    Inner::Closed { window }
                }
            }
            Inner::HalfOpen {
                probe_started,
                admitted,
                failed,
            } if failed + 1 < HALF_OPEN_PROBES => Inner::HalfOpen {
                probe_started,
                admitted,
                failed: failed + 1,
            },
            Inner::HalfOpen { .. } => {
                tracing::warn!(
                    cooldown_ms = self.config.cooldown.as_millis(),
                    "payment provider circuit opened again: every probe failed"
                );
                open
            }
            state @ Inner::Open { .. } => state,
        };
    }

    /// Whether a window of `calls` holding `failures` opens the breaker.
    fn trips(&self, calls: u32, failures: u32) -> bool {
        failures >= self.config.failure_threshold
            && u64::from(failures) * 100
                >= u64::from(self.config.failure_percent) * u64::from(calls)
    }

    /// The current state (`Open` until a probe is actually let through).
    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// The window's time slice `now` falls in.
    fn slice(&self, now: Instant) -> u64 {
        let slice_len = self.config.window.as_nanos() / WINDOW_BUCKETS as u128;
        let since = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since / slice_len.max(1)).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is always valid, even if a holder panicked.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct FakeClock(Mutex<Instant>);

    impl FakeClock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    const COOLDOWN: Duration = Duration::from_secs(5);
    const WINDOW: Duration = Duration::from_secs(5);

    fn breaker(threshold: u32) -> (CircuitBreaker, Arc<FakeClock>) {
        let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
        let config = BreakerConfig {
            failure_threshold: threshold,
            failure_percent: 80,
            window: WINDOW,
            cooldown: COOLDOWN,
        };
        (CircuitBreaker::new(config, clock.clone()), clock)
    }

    fn succeed(breaker: &CircuitBreaker, times: u32) {
        for _ in 0..times {
            breaker.try_acquire().expect("call allowed");
            breaker.record_success();
        }
    }

    fn fail(breaker: &CircuitBreaker, times: u32) {
        for _ in 0..times {
            breaker.try_acquire().expect("call allowed");
            breaker.record_failure();
        }
    }

    #[test]
    fn opens_after_the_threshold_of_failures_when_nothing_else_was_called() {
        let (breaker, _) = breaker(3);
        fail(&breaker, 2);
        assert_eq!(breaker.state(), BreakerState::Closed);
        fail(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.try_acquire(), Err(COOLDOWN));
    }

    #[test]
    fn opens_only_when_failures_are_the_share_of_the_window() {
        let (breaker, _) = breaker(3);
        // 4 of 6 calls failed (67 %): closed.
        fail(&breaker, 2);
        succeed(&breaker, 2);
        fail(&breaker, 2);
        assert_eq!(breaker.state(), BreakerState::Closed);
        // 8 of 10 (80 %): open.
        fail(&breaker, 3);
        assert_eq!(breaker.state(), BreakerState::Closed, "7 of 9 is 78 %");
        fail(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn calls_leave_the_window_as_it_moves_on() {
        let (breaker, clock) = breaker(3);
        fail(&breaker, 2);
        clock.advance(WINDOW);
        fail(&breaker, 2);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "two failures left the window"
        );
        fail(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn old_successes_leave_the_window_too() {
        let (breaker, clock) = breaker(3);
        succeed(&breaker, 100);
        clock.advance(WINDOW - WINDOW / 10);
        fail(&breaker, 50);
        assert_eq!(breaker.state(), BreakerState::Closed, "50 of 150 failed");
        clock.advance(WINDOW / 10);
        fail(&breaker, 1);
        assert_eq!(
            breaker.state(),
            BreakerState::Open,
            "the successes left the window"
        );
    }

    /// Regression (chaos run, seed 4, 20 minutes): with a healthy provider
    /// and the workload's mix of cards (some it holds and then fails, some
    /// it fails twice before charging), runs of five failures in a row came
    /// several times a minute, and a breaker that opened on them was open
    /// about half the time: 247 openings of 5 s in 1218 s on two workers
    /// outside the gateway outages, good cards' charges failed fast behind
    /// them. The mix below has runs of up to
    /// six failures and 45 % failures overall; it must never open.
    #[test]
    fn failing_cards_in_a_healthy_mix_do_not_open_the_breaker() {
        let (breaker, clock) = breaker(5);
        // One second of calls at 20 calls/s: 9 failures, 11 successes.
        let second = "SFFSSSFSSSFFFFFFSSSS";
        for _ in 0..120 {
            for outcome in second.chars() {
                breaker.try_acquire().expect("never open");
                if outcome == 'F' {
                    breaker.record_failure();
                } else {
                    breaker.record_success();
                }
                clock.advance(Duration::from_millis(50));
            }
            assert_eq!(breaker.state(), BreakerState::Closed);
        }
        // The provider goes down: every call fails and the breaker opens
        // before the window has moved on once.
        let mut failed = 0;
        while breaker.state() == BreakerState::Closed {
            breaker.try_acquire().expect("closed");
            breaker.record_failure();
            failed += 1;
            clock.advance(Duration::from_millis(50));
        }
        assert!(
            failed <= 100,
            "opened after {failed} failures (a window holds 100 calls)"
        );
    }

    #[test]
    fn fails_fast_while_open_and_says_for_how_long() {
        let (breaker, clock) = breaker(1);
        fail(&breaker, 1);
        clock.advance(Duration::from_secs(2));
        assert_eq!(breaker.try_acquire(), Err(Duration::from_secs(3)));
        clock.advance(Duration::from_millis(2999));
        assert_eq!(breaker.try_acquire(), Err(Duration::from_millis(1)));
    }

    #[test]
    fn lets_a_few_probes_through_after_the_cooldown() {
        let (breaker, clock) = breaker(1);
        fail(&breaker, 1);
        clock.advance(COOLDOWN);
        for _ in 0..HALF_OPEN_PROBES {
            assert_eq!(breaker.try_acquire(), Ok(()));
        }
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(breaker.try_acquire(), Err(COOLDOWN), "no more probes");
    }

    /// Regression (chaos run, seed 7): a backlog of requests the provider
    /// fails one by one (a card it never charges) held the breaker open for
    /// a minute after a 3-second outage: their retries took the single probe
    /// and failed it, again and again.
    #[test]
    fn failing_requests_cannot_hold_the_breaker_open() {
        let (breaker, clock) = breaker(1);
        fail(&breaker, 1);
        clock.advance(COOLDOWN);
        assert!(
            breaker.try_acquire_retry().is_err(),
            "a retry is not a probe"
        );
        breaker.try_acquire().expect("probe of a failing request");
        breaker.record_failure();
        assert_eq!(
            breaker.state(),
            BreakerState::HalfOpen,
            "one failed probe decides nothing"
        );
        breaker.try_acquire().expect("probe of a good request");
        breaker.record_success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(
            breaker.try_acquire_retry(),
            Ok(()),
            "retries go through a closed breaker"
        );
    }

    #[test]
    fn a_successful_probe_closes_the_breaker() {
        let (breaker, clock) = breaker(2);
        fail(&breaker, 2);
        clock.advance(COOLDOWN);
        breaker.try_acquire().expect("probe");
        breaker.record_success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.try_acquire(), Ok(()));
        fail(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Closed, "count starts over");
    }

    #[test]
    fn failed_probes_open_it_again_for_a_full_cooldown() {
        let (breaker, clock) = breaker(2);
        fail(&breaker, 2);
        clock.advance(COOLDOWN + Duration::from_secs(1));
        for _ in 0..HALF_OPEN_PROBES {
            breaker.try_acquire().expect("probe");
        }
        for _ in 0..HALF_OPEN_PROBES {
            breaker.record_failure();
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.try_acquire(), Err(COOLDOWN));
    }

    #[test]
    fn lost_probes_are_replaced_after_another_cooldown() {
        let (breaker, clock) = breaker(1);
        fail(&breaker, 1);
        clock.advance(COOLDOWN);
        for _ in 0..HALF_OPEN_PROBES {
            breaker.try_acquire().expect("probe that never reports");
        }
        clock.advance(COOLDOWN);
        assert_eq!(breaker.try_acquire(), Ok(()));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn late_answers_do_not_close_an_open_breaker() {
        let (breaker, _) = breaker(1);
        fail(&breaker, 1);
        breaker.record_success();
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn a_zero_threshold_behaves_as_one() {
        let (breaker, _) = breaker(0);
        fail(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn out_of_range_percent_and_window_are_clamped() {
        let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
        let config = BreakerConfig {
            failure_threshold: 1,
            failure_percent: 0,
            window: Duration::ZERO,
            cooldown: COOLDOWN,
        };
        let breaker = CircuitBreaker::new(config, clock);
        assert_eq!(breaker.config.failure_percent, 1);
        assert!(breaker.config.window > Duration::ZERO);
        succeed(&breaker, 10);
        fail(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Open, "1 % of 11 calls");
    }
}
