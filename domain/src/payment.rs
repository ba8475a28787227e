//! The payment aggregate: one attempt to take an order's money.
//!
//! Stream type `"payments"`; the stream id is the payment id, derived from
//! the order id ([`payment_id_for`]) so every step that names it agrees.
//! Recording an outcome that is already recorded changes nothing.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event;

/// The payment id of an order: a name-based UUID, the same every time.
pub fn payment_id_for(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&order_id, b"payment")
}

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Asked for; the provider's answer is not known yet.
    Requested,
    /// The provider captured the money.
    Captured,
    /// The provider declined.
    Declined,
    /// Captured, then given back.
    Refunded,
    /// No capture happened before the deadline.
    Failed,
}

impl PaymentStatus {
    /// The wire name, e.g. `CAPTURED`.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Requested => "REQUESTED",
            PaymentStatus::Captured => "CAPTURED",
            PaymentStatus::Declined => "DECLINED",
            PaymentStatus::Refunded => "REFUNDED",
            PaymentStatus::Failed => "FAILED",
        }
    }
}

/// A requested payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The order it pays for.
    pub order_id: Uuid,
    /// Amount in cents.
    pub amount_cents: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// The provider token to charge.
    pub token: String,
    /// Where it stands.
    pub status: PaymentStatus,
    /// The provider's charge, once captured.
    pub charge_id: Option<String>,
}

/// State of a payment stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PaymentState {
    /// Not requested.
    #[default]
    None,
    /// Requested (and maybe resolved).
    Requested(Payment),
}

impl PaymentState {
    /// The payment, if requested.
    pub fn payment(&self) -> Option<&Payment> {
        match self {
            PaymentState::None => None,
            PaymentState::Requested(payment) => Some(payment),
        }
    }
}

/// A request to change a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentCommand {
    /// Ask for the order's money.
    Request {
        /// The order.
        order_id: Uuid,
        /// Amount in cents (> 0).
        amount_cents: i64,
        /// ISO 4217 currency.
        currency: String,
        /// Provider token.
        token: String,
    },
    /// The provider captured it.
    RecordCapture {
        /// The provider's charge id.
        charge_id: String,
    },
    /// The provider declined it.
    RecordDecline {
        /// The provider's decline code.
        code: String,
    },
    /// The captured money was given back.
    RecordRefund {
        /// The provider's refund id.
        refund_id: String,
    },
    /// No capture before the deadline.
    RecordFailure {
        /// Why.
        reason: String,
    },
}

/// Something that happened to a payment. Every payload names its order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum PaymentEvent {
    /// The payment was asked for.
    PaymentRequested {
        /// The order.
        order_id: Uuid,
        /// Amount in cents.
        amount_cents: i64,
        /// ISO 4217 currency.
        currency: String,
        /// Provider token.
        token: String,
    },
    /// The provider captured the money.
    PaymentCaptured {
        /// The order.
        order_id: Uuid,
        /// The provider's charge id.
        charge_id: String,
    },
    /// The provider declined.
    PaymentDeclined {
        /// The order.
        order_id: Uuid,
        /// The provider's decline code.
        code: String,
    },
    /// The captured money was given back.
    PaymentRefunded {
        /// The order.
        order_id: Uuid,
        /// The refunded charge.
        charge_id: String,
        /// The provider's refund id.
        refund_id: String,
    },
    /// No capture happened before the deadline.
    PaymentFailed {
        /// The order.
        order_id: Uuid,
        /// Why.
        reason: String,
    },
}

impl PaymentEvent {
    /// The order the payment is for.
    pub fn order_id(&self) -> Uuid {
        match self {
            PaymentEvent::PaymentRequested { order_id, .. }
            | PaymentEvent::PaymentCaptured { order_id, .. }
            | PaymentEvent::PaymentDeclined { order_id, .. }
            | PaymentEvent::PaymentRefunded { order_id, .. }
            | PaymentEvent::PaymentFailed { order_id, .. } => *order_id,
        }
    }
}

event::domain_event!(
    PaymentEvent,
    stream_type = "payments",
    [
        PaymentRequested,
        PaymentCaptured,
        PaymentDeclined,
        PaymentRefunded,
        PaymentFailed
    ]
);

/// Why a payment command was refused.
#[derive(thiserror::Error, Debug, PartialEq, Eq, Clone)]
pub enum PaymentError {
    /// An outcome for a payment never requested.
    #[error("payment was never requested")]
    NotRequested,
    /// The amount is zero or negative.
    #[error("amount_cents must be greater than 0 (got {0})")]
    NonPositiveAmount(i64),
    /// The outcome contradicts the recorded one.
    #[error("payment is {status:?}; cannot record {outcome}")]
    Contradiction {
        /// What is recorded.
        status: PaymentStatus,
        /// What was asked.
        outcome: &'static str,
    },
}

/// Checks `command` against `state` and returns the events it produces.
///
/// A capture may follow a recorded failure (the provider captured late); the
/// saga then refunds it. Everything else moves forward only.
pub fn decide(
    state: &PaymentState,
    command: PaymentCommand,
) -> Result<Vec<PaymentEvent>, PaymentError> {
    use PaymentStatus as S;
    if let PaymentCommand::Request {
        order_id,
        amount_cents,
        currency,
        token,
    } = command
    {
        if state.payment().is_some() {
            return Ok(vec![]);
        }
        if amount_cents <= 0 {
            return Err(PaymentError::NonPositiveAmount(amount_cents));
        }
        return Ok(vec![PaymentEvent::PaymentRequested {
            order_id,
            amount_cents,
            currency,
            token,
        }]);
    }
    let payment = state.payment().ok_or(PaymentError::NotRequested)?;
    let order_id = payment.order_id;
    let contradiction = |outcome| PaymentError::Contradiction {
        status: payment.status,
        outcome,
    };
    match (payment.status, command) {
        (_, PaymentCommand::Request { .. }) => unreachable!("handled above"),
        (S::Requested | S::Failed, PaymentCommand::RecordCapture { charge_id }) => {
            Ok(vec![PaymentEvent::PaymentCaptured {
                order_id,
                charge_id,
            }])
        }
        (S::Captured | S::Refunded, PaymentCommand::RecordCapture { .. }) => Ok(vec![]),
        (S::Requested, PaymentCommand::RecordDecline { code }) => {
            Ok(vec![PaymentEvent::PaymentDeclined { order_id, code }])
        }
        (S::Declined, PaymentCommand::RecordDecline { .. }) => Ok(vec![]),
        (S::Captured, PaymentCommand::RecordRefund { refund_id }) => {
            Ok(vec![PaymentEvent::PaymentRefunded {
                order_id,
                charge_id: payment.charge_id.clone().unwrap_or_default(),
                refund_id,
            }])
        }
        (S::Refunded, PaymentCommand::RecordRefund { .. }) => Ok(vec![]),
        (S::Requested, PaymentCommand::RecordFailure { reason }) => {
            Ok(vec![PaymentEvent::PaymentFailed { order_id, reason }])
        }
        (S::Failed, PaymentCommand::RecordFailure { .. }) => Ok(vec![]),
        (_, PaymentCommand::RecordCapture { .. }) => Err(contradiction("a capture")),
        (_, PaymentCommand::RecordDecline { .. }) => Err(contradiction("a decline")),
        (_, PaymentCommand::RecordRefund { .. }) => Err(contradiction("a refund")),
        (_, PaymentCommand::RecordFailure { .. }) => Err(contradiction("a failure")),
    }
}

/// Applies one recorded event to the state.
pub fn evolve(state: PaymentState, event: &PaymentEvent) -> PaymentState {
    let mut payment = match (state, event) {
        (
            PaymentState::None,
            PaymentEvent::PaymentRequested {
                order_id,
                amount_cents,
                currency,
                token,
            },
        ) => {
            return PaymentState::Requested(Payment {
                order_id: *order_id,
                amount_cents: *amount_cents,
                currency: currency.clone(),
                token: token.clone(),
                status: PaymentStatus::Requested,
                charge_id: None,
            })
        }
        (PaymentState::Requested(payment), _) => payment,
        (state, _) => return state,
    };
    match event {
        PaymentEvent::PaymentRequested { .. } => {}
        PaymentEvent::PaymentCaptured { charge_id, .. } => {
            payment.status = PaymentStatus::Captured;
            payment.charge_id = Some(charge_id.clone());
        }
        PaymentEvent::PaymentDeclined { .. } => payment.status = PaymentStatus::Declined,
        PaymentEvent::PaymentRefunded { .. } => payment.status = PaymentStatus::Refunded,
        PaymentEvent::PaymentFailed { .. } => payment.status = PaymentStatus::Failed,
    }
    PaymentState::Requested(payment)
}

#[cfg(test)]
mod tests;
