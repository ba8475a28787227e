//! The order aggregate: one customer order and its lifecycle.
//!
//! Stream type `"orders"`; the stream id is the order id (a `Uuid`).
//! Today an order can only be placed; stock reservation, payment and
//! cancellation (the saga) add events and commands later.

use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event;

mod lifecycle;

/// Longest user id accepted, in characters (Unicode scalar values).
pub const MAX_USER_ID_CHARS: usize = 64;
/// Most lines an order may have.
pub const MAX_LINES: usize = 50;
/// Smallest quantity of one line.
pub const MIN_QUANTITY: i64 = 1;
/// Largest quantity of one line.
pub const MAX_QUANTITY: i64 = 1_000;
/// Longest payment token accepted, in characters.
pub const MAX_PAYMENT_TOKEN_CHARS: usize = 256;

/// Where an order is in its lifecycle. Serialized and displayed as `"PENDING"` etc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Placed; stock not yet reserved.
    Pending,
    /// Stock reserved; waiting for the payment.
    AwaitingPayment,
    /// Paid: the order is final.
    Confirmed,
    /// Refused because stock could not be reserved.
    Rejected,
    /// Cancelled: payment declined or timed out, or cancelled by the user.
    Cancelled,
}

impl OrderStatus {
    /// The wire name: `"PENDING"`, `"AWAITING_PAYMENT"`, `"CONFIRMED"`, `"REJECTED"`, `"CANCELLED"`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::AwaitingPayment => "AWAITING_PAYMENT",
            OrderStatus::Confirmed => "CONFIRMED",
            OrderStatus::Rejected => "REJECTED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }

    /// Whether the order can no longer change (confirmed, rejected or cancelled).
    pub fn is_terminal(self) -> bool {
        match self {
            OrderStatus::Pending | OrderStatus::AwaitingPayment => false,
            OrderStatus::Confirmed | OrderStatus::Rejected | OrderStatus::Cancelled => true,
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One priced line of a placed order. Field names are part of the event contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The product ordered.
    pub product_id: Uuid,
    /// Units ordered (1..=1000).
    pub quantity: i64,
    /// Catalog unit price in cents at placement.
    pub unit_price_cents: i64,
}

impl OrderLine {
    /// `quantity * unit_price_cents`, or `None` on overflow.
    pub fn total_cents(&self) -> Option<i64> {
        self.quantity.checked_mul(self.unit_price_cents)
    }
}

/// A placed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Who placed it.
    pub user_id: String,
    /// The priced lines, in the order they were requested.
    pub lines: Vec<OrderLine>,
    /// Sum of the lines' totals in cents.
    pub total_cents: i64,
    /// Current lifecycle status.
    pub status: OrderStatus,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
    /// Why it was rejected or cancelled.
    pub reason: Option<String>,
    /// The payment taken for it, once requested.
    pub payment_id: Option<Uuid>,
}

/// State of an order stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OrderState {
    /// No event yet: the order does not exist.
    #[default]
    NotPlaced,
    /// The order exists.
    Placed(Order),
}

impl OrderState {
    /// The order, if placed.
    pub fn order(&self) -> Option<&Order> {
        match self {
            OrderState::NotPlaced => None,
            OrderState::Placed(order) => Some(order),
        }
    }

    /// The order's status, if placed.
    pub fn status(&self) -> Option<OrderStatus> {
        self.order().map(|order| order.status)
    }
}

/// A line as requested by the client: no price, the catalog decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedLine {
    /// The product wanted.
    pub product_id: Uuid,
    /// Units wanted (1..=1000).
    pub quantity: i64,
}

/// A request to change an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    /// Place a new order.
    Place {
        /// Who places it (1..=64 characters, not blank; kept as given).
        user_id: String,
        /// The requested lines (1..=50, distinct products).
        lines: Vec<RequestedLine>,
        /// Opaque token the payment gateway will charge.
        payment_token: String,
        /// Current catalog price per product the caller looked up from the product streams;
        /// a product missing from this map does not exist.
        prices: HashMap<Uuid, i64>,
        /// When the order is placed (the caller's clock).
        placed_at: DateTime<Utc>,
    },
    /// Every line is reserved; payment `payment_id` is being taken.
    MarkAwaitingPayment {
        /// The payment stream's id.
        payment_id: Uuid,
    },
    /// The payment was captured.
    Confirm {
        /// The captured payment.
        payment_id: Uuid,
    },
    /// Stock could not be reserved.
    Reject {
        /// Why, naming the line.
        reason: String,
    },
    /// Cancel the order (by the user, or by the saga after a declined or
    /// timed-out payment). Refused once the payment is captured.
    Cancel {
        /// Why.
        reason: String,
        /// Whether the order's payment has been captured (the caller looks
        /// at the payment stream).
        payment_captured: bool,
    },
}

/// Something that happened to an order. Payload field names are a public contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum OrderEvent {
    /// The order was placed, priced from the catalog; its status is `PENDING`.
    OrderPlaced {
        /// Who placed it.
        user_id: String,
        /// The priced lines.
        lines: Vec<OrderLine>,
        /// Sum of the lines' totals in cents.
        total_cents: i64,
        /// Opaque token the payment gateway will charge.
        payment_token: String,
        /// When it was placed.
        placed_at: DateTime<Utc>,
    },
    /// Every line is reserved; the status is `AWAITING_PAYMENT`.
    OrderAwaitingPayment {
        /// The payment being taken.
        payment_id: Uuid,
    },
    /// The payment was captured; the status is `CONFIRMED`.
    OrderConfirmed {
        /// The captured payment.
        payment_id: Uuid,
    },
    /// Stock could not be reserved; the status is `REJECTED`.
    OrderRejected {
        /// Why, naming the line.
        reason: String,
    },
    /// The order was cancelled; the status is `CANCELLED`.
    OrderCancelled {
        /// Why.
        reason: String,
    },
}

event::domain_event!(
    OrderEvent,
    stream_type = "orders",
    [
        OrderPlaced,
        OrderAwaitingPayment,
        OrderConfirmed,
        OrderRejected,
        OrderCancelled
    ]
);

/// Why an order command was refused. Messages are shown to API users.
#[derive(thiserror::Error, Debug, PartialEq, Eq, Clone)]
pub enum OrderError {
    /// Place on an order that already exists.
    #[error("order has already been placed")]
    AlreadyPlaced,
    /// The user id is blank or longer than [`MAX_USER_ID_CHARS`].
    #[error("user_id must be 1 to {MAX_USER_ID_CHARS} characters and not blank")]
    InvalidUserId,
    /// The order has no lines.
    #[error("an order must have at least one line")]
    NoLines,
    /// The order has more than `max` lines.
    #[error("an order can have at most {max} lines (got {got})")]
    TooManyLines {
        /// The limit, [`MAX_LINES`].
        max: usize,
        /// How many lines were sent.
        got: usize,
    },
    /// The same product appears in two lines.
    #[error("product {0} appears in more than one line")]
    DuplicateProduct(Uuid),
    /// A line's quantity is outside 1..=1000.
    #[error(
        "quantity for product {product_id} must be between {MIN_QUANTITY} and {MAX_QUANTITY} (got {quantity})"
    )]
    QuantityOutOfRange {
        /// The product of the offending line.
        product_id: Uuid,
        /// The quantity sent.
        quantity: i64,
    },
    /// A line names a product that does not exist.
    #[error("product {0} does not exist")]
    UnknownProduct(Uuid),
    /// The payment token is blank.
    #[error("payment token must not be empty")]
    EmptyPaymentToken,
    /// The payment token is longer than `max` characters.
    #[error("payment token must be at most {max} characters")]
    PaymentTokenTooLong {
        /// The limit, [`MAX_PAYMENT_TOKEN_CHARS`].
        max: usize,
    },
    /// The order total does not fit in an i64 number of cents.
    #[error("order total is too large")]
    TotalOverflow,
    /// A lifecycle command on an order that does not exist.
    #[error("order does not exist")]
    NotPlaced,
    /// Cancel after the payment was captured.
    #[error("order cannot be cancelled: its payment has been captured")]
    PaymentCaptured,
    /// A lifecycle command the order's status does not allow.
    #[error("order is {status}; it cannot be {action}")]
    InvalidTransition {
        /// The order's status.
        status: OrderStatus,
        /// What was asked, e.g. "confirmed".
        action: &'static str,
    },
}

/// Checks `command` against `state` and returns the events it produces.
///
/// Place checks, in order, reporting the first broken rule: not yet placed;
/// user id; number of lines; then each line in request order: quantity range,
/// duplicate product, known product (priced from `prices` only); payment token;
/// total within `i64`.
pub fn decide(state: &OrderState, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
    match command {
        OrderCommand::Place {
            user_id,
            lines,
            payment_token,
            prices,
            placed_at,
        } => place(state, user_id, &lines, payment_token, &prices, placed_at),
        OrderCommand::MarkAwaitingPayment { payment_id } => {
            lifecycle::mark_awaiting_payment(state, payment_id)
        }
        OrderCommand::Confirm { payment_id } => lifecycle::confirm(state, payment_id),
        OrderCommand::Reject { reason } => lifecycle::reject(state, reason),
        OrderCommand::Cancel {
            reason,
            payment_captured,
        } => lifecycle::cancel(state, reason, payment_captured),
    }
}

fn place(
    state: &OrderState,
    user_id: String,
    requested: &[RequestedLine],
    payment_token: String,
    prices: &HashMap<Uuid, i64>,
    placed_at: DateTime<Utc>,
) -> Result<Vec<OrderEvent>, OrderError> {
    match state {
        OrderState::NotPlaced => {}
        OrderState::Placed(_) => return Err(OrderError::AlreadyPlaced),
    }
    if user_id.trim().is_empty() || user_id.chars().count() > MAX_USER_ID_CHARS {
        return Err(OrderError::InvalidUserId);
    }
    if requested.is_empty() {
        return Err(OrderError::NoLines);
    }
    if requested.len() > MAX_LINES {
        return Err(OrderError::TooManyLines {
            max: MAX_LINES,
            got: requested.len(),
        });
    }
    let lines = price_lines(requested, prices)?;
    if payment_token.trim().is_empty() {
        return Err(OrderError::EmptyPaymentToken);
    }
    if payment_token.chars().count() > MAX_PAYMENT_TOKEN_CHARS {
        return Err(OrderError::PaymentTokenTooLong {
            max: MAX_PAYMENT_TOKEN_CHARS,
        });
    }
    let total_cents = lines
        .iter()
        .try_fold(0_i64, |sum, line| sum.checked_add(line.total_cents()?))
        .ok_or(OrderError::TotalOverflow)?;
    Ok(vec![OrderEvent::OrderPlaced {
        user_id,
        lines,
        total_cents,
        payment_token,
        placed_at,
    }])
}

/// Validates each requested line in order and prices it from the catalog.
fn price_lines(
    requested: &[RequestedLine],
    prices: &HashMap<Uuid, i64>,
) -> Result<Vec<OrderLine>, OrderError> {
    let mut seen = HashSet::with_capacity(requested.len());
    requested
        .iter()
        .map(|line| {
            if !(MIN_QUANTITY..=MAX_QUANTITY).contains(&line.quantity) {
                return Err(OrderError::QuantityOutOfRange {
                    product_id: line.product_id,
                    quantity: line.quantity,
                });
            }
            if !seen.insert(line.product_id) {
                return Err(OrderError::DuplicateProduct(line.product_id));
            }
            let unit_price_cents = *prices
                .get(&line.product_id)
                .ok_or(OrderError::UnknownProduct(line.product_id))?;
            Ok(OrderLine {
                product_id: line.product_id,
                quantity: line.quantity,
                unit_price_cents,
            })
        })
        .collect()
}

/// Applies one recorded event to the state.
///
/// Events are facts, so this never fails. An event that cannot apply to the
/// state (only possible with a corrupted log, since [`decide`] never emits one)
/// leaves the state unchanged.
pub fn evolve(state: OrderState, event: &OrderEvent) -> OrderState {
    match (state, event) {
        (
            OrderState::NotPlaced,
            OrderEvent::OrderPlaced {
                user_id,
                lines,
                total_cents,
                payment_token: _,
                placed_at,
            },
        ) => OrderState::Placed(Order {
            user_id: user_id.clone(),
            lines: lines.clone(),
            total_cents: *total_cents,
            status: OrderStatus::Pending,
            placed_at: *placed_at,
            reason: None,
            payment_id: None,
        }),
        (OrderState::Placed(order), event) => OrderState::Placed(lifecycle::evolve(order, event)),
        (state @ OrderState::NotPlaced, _) => state,
    }
}

#[cfg(test)]
mod tests;
