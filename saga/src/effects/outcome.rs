//! What a provider call's answer means to the saga, and when an unanswered
//! call is tried again: pure, so the seeded simulator
//! (`tests/simulation.rs`) maps its provider's answers exactly as the
//! effect runner maps the real one's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::payment::PaymentCommand;
use domain::saga::{OrderSaga, SagaInput, SagaPhase, SagaPolicy};
use payment_client::{Charge, ChargeRequest, ChargeStatus, PaymentError};

use super::EffectSettings;

/// What a provider call came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Record this on the payment stream and tell the saga.
    Record(PaymentCommand, SagaInput),
    /// No answer: tell the saga (maybe) and try again after at least this long.
    Retry(Option<SagaInput>, Duration),
}

/// The charge of `saga`'s order; its idempotency key is the payment id, the
/// same on every attempt, so the provider charges at most once.
pub fn charge_request(
    saga: &OrderSaga,
    currency: &str,
    traceparent: Option<String>,
) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: saga.payment_id().to_string(),
        amount_cents: saga.total_cents,
        currency: currency.to_owned(),
        token: saga.payment_token.clone(),
        reference: saga.order_id,
        traceparent,
    }
}

/// The idempotency key of the refund of `saga`'s capture.
pub fn refund_key(saga: &OrderSaga) -> String {
    format!("refund-{}", saga.payment_id())
}

/// What the answer to a charge means.
pub fn charge_outcome(answer: Result<Charge, PaymentError>) -> Outcome {
    match answer {
        Ok(charge) => captured(charge.charge_id),
        Err(PaymentError::Declined { code, .. }) => declined(code),
        Err(PaymentError::Invalid { message }) => {
            tracing::warn!(%message, "the provider refused the charge as invalid");
            declined("invalid_request".into())
        }
        Err(PaymentError::Timeout) => Outcome::Retry(
            Some(SagaInput::ChargeUnanswered { ambiguous: true }),
            Duration::ZERO,
        ),
        Err(error) => unanswered(&error),
    }
}

/// What the provider's charges for `saga`'s order mean (asked when its
/// charge's fate is unknown).
pub fn resolve_outcome(
    saga: &OrderSaga,
    policy: &SagaPolicy,
    answer: Result<Vec<Charge>, PaymentError>,
) -> Outcome {
    let charges = match answer {
        Ok(charges) => charges,
        Err(error) => return Outcome::Retry(None, retry_after(&error)),
    };
    let landed = charges
        .iter()
        .find(|c| matches!(c.status, ChargeStatus::Captured | ChargeStatus::Refunded));
    let refused = charges.iter().find(|c| c.status == ChargeStatus::Declined);
    match (landed, refused) {
        (Some(charge), _) => captured(charge.charge_id.clone()),
        (None, Some(charge)) => declined(
            charge
                .decline_code
                .clone()
                .unwrap_or_else(|| "card_declined".into()),
        ),
        (None, None) => {
            let reason = if saga.phase == SagaPhase::Cancelled {
                "order cancelled before the payment completed".to_owned()
            } else {
                format!(
                    "payment timed out: nothing captured within {}s",
                    policy.payment_deadline.num_seconds()
                )
            };
            Outcome::Record(
                PaymentCommand::RecordFailure {
                    reason: reason.clone(),
                },
                SagaInput::PaymentFailed { reason },
            )
        }
    }
}

/// What the answer to the refund of `charge_id` means.
pub fn refund_outcome(charge_id: &str, answer: Result<Charge, PaymentError>) -> Outcome {
    match answer {
        Ok(charge) => {
            let refund_id = charge
                .refund_id
                .unwrap_or_else(|| format!("refund-of-{charge_id}"));
            Outcome::Record(
                PaymentCommand::RecordRefund { refund_id },
                SagaInput::PaymentRefunded,
            )
        }
        Err(error) => Outcome::Retry(None, retry_after(&error)),
    }
}

/// How long to wait after the `attempts`-th unanswered call.
pub fn backoff(settings: &EffectSettings, attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    settings
        .backoff_base
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(settings.backoff_max)
}

/// When to try an unanswered call again: after `delay` or the backoff of
/// `attempts`, whichever is longer, but not after the saga's `deadline`.
pub fn retry_at(
    settings: &EffectSettings,
    now: DateTime<Utc>,
    delay: Duration,
    attempts: i32,
    deadline: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    let delay = delay.max(backoff(settings, attempts));
    let next = now + chrono::Duration::from_std(delay).unwrap_or_default();
    match deadline {
        Some(deadline) if deadline < next => deadline,
        _ => next,
    }
}

fn captured(charge_id: String) -> Outcome {
    Outcome::Record(
        PaymentCommand::RecordCapture {
            charge_id: charge_id.clone(),
        },
        SagaInput::PaymentCaptured { charge_id },
    )
}

fn declined(code: String) -> Outcome {
    Outcome::Record(
        PaymentCommand::RecordDecline { code: code.clone() },
        SagaInput::PaymentDeclined { code },
    )
}

/// The provider did not take the charge (down, overloaded, circuit open):
/// nothing can have been charged, so this never fails the order.
fn unanswered(error: &PaymentError) -> Outcome {
    tracing::warn!(%error, "payment provider unavailable; the charge waits");
    Outcome::Retry(
        Some(SagaInput::ChargeUnanswered { ambiguous: false }),
        retry_after(error),
    )
}

fn retry_after(error: &PaymentError) -> Duration {
    match error {
        PaymentError::CircuitOpen { retry_after } => *retry_after,
        _ => Duration::ZERO,
    }
}
