//! Exponential backoff with full jitter between retries.

use std::time::Duration;

/// Delay before retry `n` (1-based): uniformly random in
/// `[0, min(max, base * 2^(n-1))]` ("full jitter"), so clients that failed
/// together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first retry's delay.
    pub base: Duration,
    /// Largest ceiling.
    pub max: Duration,
}

impl Backoff {
    /// The largest delay before retry `retry` (1-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2_u32.saturating_pow(retry.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A random delay before retry `retry`.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_at(retry, rand::random::<f64>())
    }

    /// The delay before retry `retry` for a uniform draw `unit` in `[0, 1]`.
    pub fn delay_at(&self, retry: u32, unit: f64) -> Duration {
        self.ceiling(retry).mul_f64(unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        }
    }

    #[test]
    fn ceilings_double_up_to_the_max() {
        let ceilings: Vec<u128> = (1..=6).map(|n| backoff().ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff().ceiling(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn delays_are_jittered_over_the_whole_range() {
        assert_eq!(backoff().delay_at(3, 0.0), Duration::ZERO);
        assert_eq!(backoff().delay_at(3, 0.5), Duration::from_millis(200));
        assert_eq!(backoff().delay_at(3, 1.0), Duration::from_millis(400));
        assert_eq!(backoff().delay_at(3, 7.0), Duration::from_millis(400));
    }

    #[test]
    fn random_delays_stay_below_the_ceiling() {
        for retry in 1..10 {
            assert!(backoff().delay(retry) <= backoff().ceiling(retry));
        }
    }
}
