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

/// The columns of `read.orders` that make up an [`Order`] (table alias `o`).
macro_rules! order_columns {
    () => {
        "o.order_id, o.user_id, o.status, o.reason, o.lines, o.total_cents, o.version, \
         o.placed_at, o.updated_at"
    };
}
pub(crate) use order_columns;

/// A catalog entry with its stock levels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
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
    /// When the view last changed.
    pub updated_at: DateTime<Utc>,
}

impl Versioned for Order {
    fn version(&self) -> i64 {
        self.version
    }
}

/// One line of an order (an element of the `read.orders.lines` JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The product ordered.
    pub product_id: Uuid,
    /// How many units.
    pub quantity: i64,
    /// The catalog price per unit when the order was placed.
    pub unit_price_cents: i64,
}
