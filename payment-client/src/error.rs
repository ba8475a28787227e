//! What can go wrong when talking to the payment provider.

use std::time::Duration;

/// A failed provider call, decoded from the HTTP status and problem body
/// (see [`crate::decode`]) or from the transport.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum PaymentError {
    /// The provider declined the charge (402); final for this charge.
    #[error("payment declined ({code}): {message}")]
    Declined {
        /// The provider's decline code, e.g. `insufficient_funds`.
        code: String,
        /// The provider's explanation.
        message: String,
    },
    /// The provider refused the request itself (400, 422, other 4xx): a bug
    /// or a conflict on our side, not worth retrying.
    #[error("payment request refused: {message}")]
    Invalid {
        /// The provider's explanation.
        message: String,
    },
    /// The charge does not exist (404).
    #[error("no such charge at the payment provider")]
    NotFound,
    /// The provider could not be reached or answered 408/409/429/5xx; the
    /// outcome of a charge is unknown, so retry with the same idempotency key.
    #[error("payment provider unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
    },
    /// No answer within the request timeout; the charge may have happened,
    /// so retry with the same idempotency key or look it up by reference.
    #[error("payment provider did not answer in time")]
    Timeout,
    /// The circuit breaker is open: the call was not sent.
    #[error("payment provider circuit open; retry in {retry_after:?}")]
    CircuitOpen {
        /// How long until the breaker lets a probe through.
        retry_after: Duration,
    },
}

impl PaymentError {
    /// True for transient failures worth retrying with the same idempotency
    /// key (`Unavailable`, `Timeout`); these also count against the breaker.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Timeout)
    }

    /// A short name of the kind of failure, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Declined { .. } => "declined",
            Self::Invalid { .. } => "invalid",
            Self::NotFound => "not_found",
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout => "timeout",
            Self::CircuitOpen { .. } => "circuit_open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retryable() {
        let unavailable = PaymentError::Unavailable {
            message: "down".into(),
        };
        assert!(unavailable.is_retryable());
        assert!(PaymentError::Timeout.is_retryable());
        for final_error in [
            PaymentError::Declined {
                code: "card_declined".into(),
                message: "no".into(),
            },
            PaymentError::Invalid {
                message: "bad".into(),
            },
            PaymentError::NotFound,
            PaymentError::CircuitOpen {
                retry_after: Duration::from_secs(1),
            },
        ] {
            assert!(!final_error.is_retryable(), "{final_error:?}");
        }
    }
}
