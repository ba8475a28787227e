//! The views the API returns, as read from the read-model tables.
//!
//! Each struct is both the row (`sqlx::FromRow`, columns by name) and the
//! response body (`Serialize`): a new read-model column becomes a new field
//! here plus its name in the matching `*_columns!` list.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::consistency::Versioned;

/// The columns of `read.products` that make up a [`Product`] (table alias `p`).
macro_rules! product_columns {
    () => {
        "p.product_id, p.name, p.price_cents, p.available, p.reserved, p.sold, p.version"
    };
}
pub(crate) use product_columns;

/// The columns of `read.orders` (alias `o`) and `read.payments` (alias `y`,
/// see [`payment_join`]) that make up an [`Order`]. The payment is one JSON
/// object, `NULL` when the order has no payment row.
macro_rules! order_columns {
    () => {
        "o.order_id, o.user_id, o.status, o.reason, o.lines, o.total_cents, o.version, \
         o.placed_at, o.updated_at, \
         CASE WHEN y.payment_id IS NULL THEN NULL ELSE jsonb_build_object( \
           'payment_id', y.payment_id, 'status', y.status, 'amount_cents', y.amount_cents, \
           'currency', y.currency, 'charge_id', y.charge_id, 'refund_id', y.refund_id, \
           'decline_code', y.decline_code, 'failure_reason', y.failure_reason) END AS payment"
    };
}
pub(crate) use order_columns;

/// The join that brings an order's payment (alias `y`) next to `read.orders` (alias `o`).
macro_rules! payment_join {
    () => {
        " LEFT JOIN read.payments y ON y.order_id = o.order_id"
    };
}
pub(crate) use payment_join;

/// A catalog entry with its stock levels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Product {
    /// The product (and inventory stream) id.
    pub product_id: Uuid,
    /// Display name.
    pub name: String,
    /// Current unit price.
    pub price_cents: i64,
    /// Units that can still be ordered.
    pub available: i64,
    /// Units held for orders awaiting payment.
    pub reserved: i64,
    /// Units sold.
    pub sold: i64,
    /// The last applied version of the product's stream.
    pub version: i64,
}

impl Versioned for Product {
    fn version(&self) -> i64 {
        self.version
    }
}

/// An order as its user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Order {
    /// The order (and order stream) id.
    pub order_id: Uuid,
    /// Who placed it.
    pub user_id: String,
    /// `PENDING`, `AWAITING_PAYMENT`, `CONFIRMED`, `REJECTED` or `CANCELLED`.
    pub status: String,
    /// Why it was rejected or cancelled; omitted otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What was ordered, at the prices of the catalog at placement.
    #[sqlx(json)]
    pub lines: Vec<OrderLine>,
    /// The sum of quantity × unit price over the lines.
    pub total_cents: i64,
    /// The last applied version of the order's stream.
    pub version: i64,
    /// When the order was placed.
    pub placed_at: DateTime<Utc>,
    /// When the order's view last changed (payment changes not included).
    pub updated_at: DateTime<Utc>,
    /// The order's payment, `null` until one is requested.
    #[sqlx(json(nullable))]
    pub payment: Option<Payment>,
}

impl Versioned for Order {
    fn version(&self) -> i64 {
        self.version
    }
}

/// One line of an order (an element of the `read.orders.lines` JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderLine {
    /// The product ordered.
    pub product_id: Uuid,
    /// How many units.
    pub quantity: i64,
    /// The catalog price per unit when the order was placed.
    pub unit_price_cents: i64,
}

/// An order's payment (a row of `read.payments`). Members that do not apply
/// yet (or to this outcome) are omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Payment {
    /// The payment (and payment stream) id.
    pub payment_id: Uuid,
    /// `REQUESTED`, `CAPTURED`, `DECLINED`, `REFUNDED` or `FAILED`.
    pub status: String,
    /// The amount asked for, in cents.
    pub amount_cents: i64,
    /// ISO 4217 currency of the amount.
    pub currency: String,
    /// The provider's charge, once captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_id: Option<String>,
    /// The provider's refund, once refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// The provider's decline code, once declined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    /// Why no capture happened in time (or the payment was voided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}
