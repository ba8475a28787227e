//! What the simulator does besides bookkeeping: load-test knobs
//! ([`Behaviour`]) and the test-card behaviour chosen by a token ([`Scenario`]).

use std::time::Duration;

/// Decline code used when a `tok_decline*` token names none.
pub const DEFAULT_DECLINE_CODE: &str = "card_declined";

/// How many requests per `Idempotency-Key` a `tok_flaky*` charge answers 503.
pub const FLAKY_FAILURES: i32 = 2;

/// Simulated latency and failures, set by flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Added to every response of the charge routes (not the health probes).
    pub latency: Duration,
    /// Probability (0.0 to 1.0) that a charge or refund is answered 503 before anything is done.
    pub failure_rate: f64,
    /// How long `tok_timeout*` answers and `tok_hang*` requests are held.
    pub slow_response: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            failure_rate: 0.0,
            slow_response: Duration::from_secs(10),
        }
    }
}

impl Behaviour {
    /// Draws whether this request fails with 503 (probability `failure_rate`).
    pub fn injects_failure(&self) -> bool {
        self.failure_rate > 0.0 && rand::random::<f64>() < self.failure_rate
    }
}

/// The behaviour a card token asks for, like a real provider's test cards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scenario {
    /// Anything else: the charge is captured.
    Capture,
    /// `tok_decline*`: declined (402) with this decline code.
    Decline(String),
    /// `tok_timeout*`: captured and recorded at once, but every answer is slow.
    Timeout,
    /// `tok_hang*`: held, then 504, and nothing recorded.
    Hang,
    /// `tok_flaky*`: 503 for the first two requests of a key, then as `Capture`.
    Flaky,
}

impl Scenario {
    /// The scenario of `token`.
    pub fn of(token: &str) -> Self {
        if let Some(rest) = token.strip_prefix("tok_decline") {
            let code = rest.strip_prefix('_').filter(|code| !code.is_empty());
            Self::Decline(code.unwrap_or(DEFAULT_DECLINE_CODE).to_owned())
        } else if token.starts_with("tok_timeout") {
            Self::Timeout
        } else if token.starts_with("tok_hang") {
            Self::Hang
        } else if token.starts_with("tok_flaky") {
            Self::Flaky
        } else {
            Self::Capture
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_choose_scenarios() {
        assert_eq!(Scenario::of("tok_visa"), Scenario::Capture);
        assert_eq!(Scenario::of("tok_timeout"), Scenario::Timeout);
        assert_eq!(Scenario::of("tok_timeout_123"), Scenario::Timeout);
        assert_eq!(Scenario::of("tok_hang_forever"), Scenario::Hang);
        assert_eq!(Scenario::of("tok_flaky1"), Scenario::Flaky);
        assert_eq!(Scenario::of("TOK_DECLINE"), Scenario::Capture);
    }

    #[test]
    fn decline_codes_come_from_the_suffix() {
        let decline = |code: &str| Scenario::Decline(code.to_owned());
        assert_eq!(Scenario::of("tok_decline"), decline("card_declined"));
        assert_eq!(Scenario::of("tok_decline_"), decline("card_declined"));
        assert_eq!(Scenario::of("tok_declined"), decline("card_declined"));
        assert_eq!(
            Scenario::of("tok_decline_insufficient_funds"),
            decline("insufficient_funds")
        );
    }

    #[test]
    fn failure_rate_extremes_are_deterministic() {
        let never = Behaviour::default();
        let always = Behaviour {
            failure_rate: 1.0,
            ..Behaviour::default()
        };
        assert!((0..1000).all(|_| !never.injects_failure()));
        assert!((0..1000).all(|_| always.injects_failure()));
    }
}
