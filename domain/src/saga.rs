//! The order saga as a pure state machine: (saga state, input) → (new state,
//! actions).
//!
//! Flow: reserve each line's stock in turn → all reserved: order
//! `AWAITING_PAYMENT`, payment requested and charged → captured: the
//! reservations are sold and the order `CONFIRMED`; declined or timed out:
//! the reservations are released and the order `CANCELLED`. Not enough stock
//! on a line: the lines already reserved are released and the order
//! `REJECTED`. A user's cancel before capture releases the stock; a capture
//! that arrives after a cancel is refunded.
//!
//! Actions on streams (`SagaAction`) run in the caller's transaction; the
//! call to the payment provider is an [`Effect`] kept in the state and run
//! outside it. Every input may arrive more than once: repeating one changes
//! nothing.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::order::OrderLine;
use crate::payment::payment_id_for;

/// Settings the saga's decisions depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaPolicy {
    /// How long a payment may stay unknown before the saga resolves it.
    pub payment_deadline: Duration,
    /// Currency of every charge.
    pub currency: String,
}

/// Where an order's saga stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SagaPhase {
    /// Reserving the lines' stock, one after the other.
    Reserving,
    /// Every line reserved; waiting for the payment.
    AwaitingPayment,
    /// Paid; stock sold.
    Confirmed,
    /// Not enough stock; nothing held.
    Rejected,
    /// Cancelled; nothing held (a late capture is refunded).
    Cancelled,
}

/// What the saga knows about the payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentProgress {
    /// Not asked for yet.
    NotRequested,
    /// Asked for; outcome unknown.
    Requested,
    /// Captured by the provider.
    Captured {
        /// The provider's charge.
        charge_id: String,
    },
    /// Declined by the provider.
    Declined,
    /// Captured, then refunded.
    Refunded,
    /// Not captured before the deadline.
    Failed,
}

/// A call to the payment provider the saga wants made, outside any
/// transaction, with retries. Its outcome comes back as an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    /// Charge the order's total (idempotency key = payment id).
    Charge,
    /// Ask the provider what became of the order's charge (deadline passed,
    /// or the order was cancelled while a charge may be in flight).
    Resolve,
    /// Refund a capture that arrived after the order was cancelled.
    Refund {
        /// The charge to refund.
        charge_id: String,
    },
}

/// The saga of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSaga {
    /// The order.
    pub order_id: Uuid,
    /// The order's priced lines.
    pub lines: Vec<OrderLine>,
    /// The order's total in cents.
    pub total_cents: i64,
    /// Token to charge.
    pub payment_token: String,
    /// Where it stands.
    pub phase: SagaPhase,
    /// Products whose stock is currently held (or sold) for the order.
    pub reserved: Vec<Uuid>,
    /// The payment.
    pub payment: PaymentProgress,
    /// The provider call still to make, if any.
    pub effect: Option<Effect>,
    /// When an unknown payment gets resolved.
    pub deadline: Option<DateTime<Utc>>,
    /// Whether a charge attempt may have reached the provider without an
    /// answer (a timeout): only then can the charge's fate be unknown.
    pub charge_ambiguous: bool,
    /// How often the deadline was moved on because nothing reached the
    /// provider (see [`MAX_DEADLINE_EXTENSIONS`]).
    #[serde(default)]
    pub deadline_extensions: u32,
}

/// How many times a payment deadline is moved on while nothing reaches the
/// provider (it is down, or answers this card with "no charge made" every
/// time) before the saga stops charging and resolves the payment with the
/// provider instead: an outage does not fail an order at once, but a payment
/// that can never complete does not hold its stock for ever either.
pub const MAX_DEADLINE_EXTENSIONS: u32 = 5;

impl OrderSaga {
    /// The id of the order's payment stream.
    pub fn payment_id(&self) -> Uuid {
        payment_id_for(self.order_id)
    }

    /// Whether nothing is left to do.
    pub fn is_finished(&self) -> bool {
        self.effect.is_none()
            && matches!(
                self.phase,
                SagaPhase::Confirmed | SagaPhase::Rejected | SagaPhase::Cancelled
            )
    }
}

/// Something the saga reacts to: an event, the outcome of an action it
/// issued, or the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaInput {
    /// The order was placed.
    OrderPlaced {
        /// Its priced lines.
        lines: Vec<OrderLine>,
        /// Its total.
        total_cents: i64,
        /// Token to charge.
        payment_token: String,
    },
    /// Stock was reserved on a product for the order.
    Reserved {
        /// The product.
        product_id: Uuid,
    },
    /// A product refused the reservation.
    ReservationRefused {
        /// The product.
        product_id: Uuid,
        /// Why (e.g. "not enough stock: requested 3, available 1").
        reason: String,
    },
    /// The order was cancelled (by the user, or by the saga itself).
    OrderCancelled,
    /// The provider captured the payment.
    PaymentCaptured {
        /// The provider's charge.
        charge_id: String,
    },
    /// The provider declined the payment.
    PaymentDeclined {
        /// The decline code.
        code: String,
    },
    /// The payment was recorded as failed (nothing captured in time).
    PaymentFailed {
        /// Why.
        reason: String,
    },
    /// The payment was refunded.
    PaymentRefunded,
    /// A charge attempt got no answer; `ambiguous` when it may have reached
    /// the provider (a timeout), not when it surely did not (refused, 503,
    /// circuit open).
    ChargeUnanswered {
        /// Whether the provider may have processed it.
        ambiguous: bool,
    },
    /// The clock: the saga's deadline may have passed.
    Tick,
}

/// A change the saga asks for on some stream, run in the caller's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaAction {
    /// Hold stock for the order.
    Reserve {
        /// The product.
        product_id: Uuid,
        /// Units.
        quantity: i64,
    },
    /// Give the order's held stock back.
    Release {
        /// The product.
        product_id: Uuid,
    },
    /// Sell the order's held stock.
    CommitReservation {
        /// The product.
        product_id: Uuid,
    },
    /// Move the order to `AWAITING_PAYMENT`.
    MarkAwaitingPayment {
        /// Its payment.
        payment_id: Uuid,
    },
    /// Open the order's payment stream.
    RequestPayment {
        /// The payment.
        payment_id: Uuid,
        /// Amount in cents.
        amount_cents: i64,
        /// Currency.
        currency: String,
        /// Token to charge.
        token: String,
    },
    /// Move the order to `CONFIRMED`.
    ConfirmOrder {
        /// The captured payment.
        payment_id: Uuid,
    },
    /// Move the order to `REJECTED`.
    RejectOrder {
        /// Why, naming the line.
        reason: String,
    },
    /// Move the order to `CANCELLED`.
    CancelOrder {
        /// Why.
        reason: String,
    },
}

/// The saga's answer to one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    /// The saga after the input (`None`: there is no saga for this order).
    pub saga: Option<OrderSaga>,
    /// What to do, in order.
    pub actions: Vec<SagaAction>,
}

/// Decides what the saga of `order_id` does about `input` at `now`.
pub fn react(
    saga: Option<&OrderSaga>,
    order_id: Uuid,
    input: SagaInput,
    now: DateTime<Utc>,
    policy: &SagaPolicy,
) -> Reaction {
    let Some(saga) = saga else {
        return match input {
            SagaInput::OrderPlaced {
                lines,
                total_cents,
                payment_token,
            } => start(order_id, lines, total_cents, payment_token),
            // Nothing else can concern an order the saga never saw.
            _ => Reaction {
                saga: None,
                actions: vec![],
            },
        };
    };
    let mut next = saga.clone();
    let actions = step(&mut next, input, now, policy);
    Reaction {
        saga: Some(next),
        actions,
    }
}

fn start(
    order_id: Uuid,
    lines: Vec<OrderLine>,
    total_cents: i64,
    payment_token: String,
) -> Reaction {
    let actions = lines
        .first()
        .map(|line| SagaAction::Reserve {
            product_id: line.product_id,
            quantity: line.quantity,
        })
        .into_iter()
        .collect();
    Reaction {
        saga: Some(OrderSaga {
            order_id,
            lines,
            total_cents,
            payment_token,
            phase: SagaPhase::Reserving,
            reserved: vec![],
            payment: PaymentProgress::NotRequested,
            effect: None,
            deadline: None,
            charge_ambiguous: false,
            deadline_extensions: 0,
        }),
        actions,
    }
}

fn step(
    saga: &mut OrderSaga,
    input: SagaInput,
    now: DateTime<Utc>,
    policy: &SagaPolicy,
) -> Vec<SagaAction> {
    use SagaPhase as P;
    match (saga.phase, input) {
        (P::Reserving, SagaInput::Reserved { product_id }) => {
            reserved(saga, product_id, now, policy)
        }
        (P::Reserving, SagaInput::ReservationRefused { product_id, reason }) => {
            let line = saga
                .lines
                .iter()
                .position(|l| l.product_id == product_id)
                .map_or(0, |i| i + 1);
            saga.phase = P::Rejected;
            let mut actions = release_all(saga);
            actions.push(SagaAction::RejectOrder {
                reason: format!("line {line} (product {product_id}): {reason}"),
            });
            actions
        }
        (P::Reserving | P::AwaitingPayment, SagaInput::OrderCancelled) => {
            saga.phase = P::Cancelled;
            saga.deadline = None;
            if saga.payment == PaymentProgress::Requested {
                // A charge may be in flight: find out, refund if it landed.
                saga.effect = Some(Effect::Resolve);
            }
            release_all(saga)
        }
        (P::AwaitingPayment, SagaInput::PaymentCaptured { charge_id }) => {
            saga.phase = P::Confirmed;
            saga.payment = PaymentProgress::Captured { charge_id };
            saga.effect = None;
            saga.deadline = None;
            // Confirm first: if a user's cancel won the race for the order
            // stream, nothing is sold and the caller retries with the cancel.
            let mut actions = vec![SagaAction::ConfirmOrder {
                payment_id: saga.payment_id(),
            }];
            actions.extend(
                saga.reserved
                    .iter()
                    .map(|&product_id| SagaAction::CommitReservation { product_id }),
            );
            actions
        }
        (P::Cancelled, SagaInput::PaymentCaptured { charge_id }) => {
            if matches!(
                saga.payment,
                PaymentProgress::Refunded | PaymentProgress::Captured { .. }
            ) {
                return vec![];
            }
            saga.payment = PaymentProgress::Captured {
                charge_id: charge_id.clone(),
            };
            saga.effect = Some(Effect::Refund { charge_id });
            vec![]
        }
        (P::AwaitingPayment, SagaInput::PaymentDeclined { code }) => payment_lost(
            saga,
            PaymentProgress::Declined,
            format!("payment declined: {code}"),
        ),
        (P::AwaitingPayment, SagaInput::PaymentFailed { reason }) => {
            payment_lost(saga, PaymentProgress::Failed, reason)
        }
        (P::Cancelled, SagaInput::PaymentDeclined { .. }) => {
            settle_unpaid(saga, PaymentProgress::Declined)
        }
        (P::Cancelled, SagaInput::PaymentFailed { .. }) => {
            settle_unpaid(saga, PaymentProgress::Failed)
        }
        (_, SagaInput::PaymentRefunded) => {
            saga.payment = PaymentProgress::Refunded;
            if matches!(saga.effect, Some(Effect::Refund { .. })) {
                saga.effect = None;
            }
            vec![]
        }
        (P::AwaitingPayment, SagaInput::ChargeUnanswered { ambiguous }) => {
            saga.charge_ambiguous |= ambiguous;
            vec![]
        }
        (P::AwaitingPayment, SagaInput::Tick) => {
            if saga.deadline.is_some_and(|deadline| now >= deadline)
                && saga.effect == Some(Effect::Charge)
            {
                if saga.charge_ambiguous || saga.deadline_extensions >= MAX_DEADLINE_EXTENSIONS {
                    // The provider may have charged, or it has not taken the
                    // charge for too long: ask it before deciding (nothing
                    // captured: the order is cancelled, its stock released).
                    saga.effect = Some(Effect::Resolve);
                    saga.deadline = None;
                } else {
                    // Nothing reached the provider (it is down): a short
                    // outage never fails an order, keep trying.
                    saga.deadline = Some(now + policy.payment_deadline);
                    saga.deadline_extensions += 1;
                }
            }
            vec![]
        }
        // Duplicates and inputs that no longer matter in this phase.
        _ => vec![],
    }
}

fn reserved(
    saga: &mut OrderSaga,
    product_id: Uuid,
    now: DateTime<Utc>,
    policy: &SagaPolicy,
) -> Vec<SagaAction> {
    let expected = saga.lines.get(saga.reserved.len()).map(|l| l.product_id);
    if expected != Some(product_id) {
        return vec![];
    }
    saga.reserved.push(product_id);
    if let Some(line) = saga.lines.get(saga.reserved.len()) {
        return vec![SagaAction::Reserve {
            product_id: line.product_id,
            quantity: line.quantity,
        }];
    }
    let payment_id = saga.payment_id();
    saga.phase = SagaPhase::AwaitingPayment;
    saga.payment = PaymentProgress::Requested;
    saga.effect = Some(Effect::Charge);
    saga.deadline = Some(now + policy.payment_deadline);
    vec![
        SagaAction::MarkAwaitingPayment { payment_id },
        SagaAction::RequestPayment {
            payment_id,
            amount_cents: saga.total_cents,
            currency: policy.currency.clone(),
            token: saga.payment_token.clone(),
        },
    ]
}

fn release_all(saga: &mut OrderSaga) -> Vec<SagaAction> {
    saga.reserved
        .drain(..)
        .map(|product_id| SagaAction::Release { product_id })
        .collect()
}

fn payment_lost(saga: &mut OrderSaga, outcome: PaymentProgress, reason: String) -> Vec<SagaAction> {
    saga.phase = SagaPhase::Cancelled;
    saga.payment = outcome;
    saga.effect = None;
    saga.deadline = None;
    let mut actions = release_all(saga);
    actions.push(SagaAction::CancelOrder { reason });
    actions
}

fn settle_unpaid(saga: &mut OrderSaga, outcome: PaymentProgress) -> Vec<SagaAction> {
    if saga.payment == PaymentProgress::Requested {
        saga.payment = outcome;
    }
    if saga.effect == Some(Effect::Resolve) || saga.effect == Some(Effect::Charge) {
        saga.effect = None;
    }
    vec![]
}

#[cfg(test)]
mod tests;
