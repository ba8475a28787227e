//! Read models against a fresh fold of the log: every row of `read.products`,
//! `read.orders`, `read.user_orders` and `read.payments` must be what the
//! domain aggregates folded from the log say (missing, extra and different
//! rows are violations), its `version` the stream's last version.
//!
//! The expected rows are computed from [`crate::fold`] (the domain's own
//! `evolve`), not by the projector's projection functions.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::fold::Folded;
use crate::report::{AuditReport, Check};

/// A row of `read.products`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ProductRow {
    /// The product (stream) id.
    pub product_id: Uuid,
    /// Display name.
    pub name: String,
    /// Catalog price.
    pub price_cents: i64,
    /// Units available.
    pub available: i64,
    /// Units reserved.
    pub reserved: i64,
    /// Units sold.
    pub sold: i64,
    /// Stream version folded in.
    pub version: i64,
    /// When the last event folded in was recorded.
    pub updated_at: DateTime<Utc>,
}

/// A row of `read.orders`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OrderRow {
    /// The order (stream) id.
    pub order_id: Uuid,
    /// Who placed it.
    pub user_id: String,
    /// Status wire name.
    pub status: String,
    /// Why rejected or cancelled.
    pub reason: Option<String>,
    /// The lines as stored.
    pub lines: serde_json::Value,
    /// Total.
    pub total_cents: i64,
    /// Stream version folded in.
    pub version: i64,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
    /// When the last event folded in was recorded.
    pub updated_at: DateTime<Utc>,
}

/// A row of `read.user_orders`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct UserOrderRow {
    /// The order (stream) id.
    pub order_id: Uuid,
    /// Who placed it.
    pub user_id: String,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
    /// Stream version folded in.
    pub version: i64,
}

/// A row of `read.payments`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PaymentRow {
    /// The payment (stream) id.
    pub payment_id: Uuid,
    /// The order it pays.
    pub order_id: Uuid,
    /// Status wire name.
    pub status: String,
    /// Amount.
    pub amount_cents: i64,
    /// Currency.
    pub currency: String,
    /// The provider's charge.
    pub charge_id: Option<String>,
    /// The provider's refund.
    pub refund_id: Option<String>,
    /// The provider's decline code.
    pub decline_code: Option<String>,
    /// Why no capture happened in time.
    pub failure_reason: Option<String>,
    /// Stream version folded in.
    pub version: i64,
    /// When the last event folded in was recorded.
    pub updated_at: DateTime<Utc>,
}

/// Every read model's rows, by stream id.
#[derive(Debug, Clone, Default)]
pub struct ReadRows {
    /// `read.products`.
    pub products: HashMap<Uuid, ProductRow>,
    /// `read.orders`.
    pub orders: HashMap<Uuid, OrderRow>,
    /// `read.user_orders`.
    pub user_orders: HashMap<Uuid, UserOrderRow>,
    /// `read.payments`.
    pub payments: HashMap<Uuid, PaymentRow>,
}

impl ReadRows {
    /// Reads every row of every read model (one query per table).
    pub async fn read(conn: &mut PgConnection) -> Result<Self, sqlx::Error> {
        let products: Vec<ProductRow> = sqlx::query_as(
            "SELECT product_id, name, price_cents, available, reserved, sold, version, updated_at
             FROM read.products",
        )
        .fetch_all(&mut *conn)
        .await?;
        let orders: Vec<OrderRow> = sqlx::query_as(
            "SELECT order_id, user_id, status, reason, lines, total_cents, version, placed_at,
                    updated_at
             FROM read.orders",
        )
        .fetch_all(&mut *conn)
        .await?;
        let user_orders: Vec<UserOrderRow> =
            sqlx::query_as("SELECT order_id, user_id, placed_at, version FROM read.user_orders")
                .fetch_all(&mut *conn)
                .await?;
        let payments: Vec<PaymentRow> = sqlx::query_as(
            "SELECT payment_id, order_id, status, amount_cents, currency, charge_id, refund_id,
                    decline_code, failure_reason, version, updated_at
             FROM read.payments",
        )
        .fetch_all(&mut *conn)
        .await?;
        Ok(Self {
            products: products.into_iter().map(|r| (r.product_id, r)).collect(),
            orders: orders.into_iter().map(|r| (r.order_id, r)).collect(),
            user_orders: user_orders.into_iter().map(|r| (r.order_id, r)).collect(),
            payments: payments.into_iter().map(|r| (r.payment_id, r)).collect(),
        })
    }
}

/// A row as named, printable fields, for comparing and showing differences.
type Fields = Vec<(&'static str, String)>;

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `at` at the microsecond precision PostgreSQL keeps (as sqlx writes it).
fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(at)
}

fn opt(value: Option<&String>) -> String {
    value.map_or_else(|| "NULL".to_owned(), |v| format!("{v:?}"))
}

impl ProductRow {
    fn fields(&self) -> Fields {
        vec![
            ("name", format!("{:?}", self.name)),
            ("price_cents", self.price_cents.to_string()),
            ("available", self.available.to_string()),
            ("reserved", self.reserved.to_string()),
            ("sold", self.sold.to_string()),
            ("version", self.version.to_string()),
            ("updated_at", time(self.updated_at)),
        ]
    }
}

impl OrderRow {
    fn fields(&self) -> Fields {
        vec![
            ("user_id", format!("{:?}", self.user_id)),
            ("status", self.status.clone()),
            ("reason", opt(self.reason.as_ref())),
            // Parsed JSON: key order and spacing do not matter.
            ("lines", self.lines.to_string()),
            ("total_cents", self.total_cents.to_string()),
            ("version", self.version.to_string()),
            ("placed_at", time(self.placed_at)),
            ("updated_at", time(self.updated_at)),
        ]
    }
}

impl UserOrderRow {
    fn fields(&self) -> Fields {
        vec![
            ("user_id", format!("{:?}", self.user_id)),
            ("placed_at", time(self.placed_at)),
            ("version", self.version.to_string()),
        ]
    }
}

impl PaymentRow {
    fn fields(&self) -> Fields {
        vec![
            ("order_id", self.order_id.to_string()),
            ("status", self.status.clone()),
            ("amount_cents", self.amount_cents.to_string()),
            ("currency", self.currency.clone()),
            ("charge_id", opt(self.charge_id.as_ref())),
            ("refund_id", opt(self.refund_id.as_ref())),
            ("decline_code", opt(self.decline_code.as_ref())),
            ("failure_reason", opt(self.failure_reason.as_ref())),
            ("version", self.version.to_string()),
            ("updated_at", time(self.updated_at)),
        ]
    }
}

/// The rows the read models must hold, computed from the fold.
#[derive(Debug, Default)]
pub struct Expected {
    /// `read.products`.
    pub products: BTreeMap<Uuid, ProductRow>,
    /// `read.orders`.
    pub orders: BTreeMap<Uuid, OrderRow>,
    /// `read.user_orders`.
    pub user_orders: BTreeMap<Uuid, UserOrderRow>,
    /// `read.payments`.
    pub payments: BTreeMap<Uuid, PaymentRow>,
}

impl Expected {
    /// The rows of every stream the fold says exists.
    pub fn of(folded: &Folded) -> Self {
        let mut expected = Self::default();
        for (&id, fold) in &folded.products {
            let (Some(p), Some(updated_at)) = (&fold.product, fold.updated_at) else {
                continue;
            };
            expected.products.insert(
                id,
                ProductRow {
                    product_id: id,
                    name: p.name.clone(),
                    price_cents: p.price_cents,
                    available: p.available,
                    reserved: p.reserved,
                    sold: p.sold,
                    version: fold.version,
                    updated_at,
                },
            );
        }
        for (&id, fold) in &folded.orders {
            let (Some(o), Some(updated_at)) = (&fold.order, fold.updated_at) else {
                continue;
            };
            expected.orders.insert(
                id,
                OrderRow {
                    order_id: id,
                    user_id: o.user_id.clone(),
                    status: o.status.as_str().to_owned(),
                    reason: o.reason.clone(),
                    lines: serde_json::to_value(&o.lines).expect("order lines serialize"),
                    total_cents: o.total_cents,
                    version: fold.version,
                    placed_at: micros(o.placed_at),
                    updated_at,
                },
            );
            expected.user_orders.insert(
                id,
                UserOrderRow {
                    order_id: id,
                    user_id: o.user_id.clone(),
                    placed_at: micros(o.placed_at),
                    version: fold.version,
                },
            );
        }
        for (&id, fold) in &folded.payments {
            let (Some(p), Some(updated_at)) = (&fold.payment, fold.updated_at) else {
                continue;
            };
            expected.payments.insert(
                id,
                PaymentRow {
                    payment_id: id,
                    order_id: p.order_id,
                    status: p.status.as_str().to_owned(),
                    amount_cents: p.amount_cents,
                    currency: p.currency.clone(),
                    charge_id: p.charge_id.clone(),
                    refund_id: fold.refund_id.clone(),
                    decline_code: fold.decline_code.clone(),
                    failure_reason: fold.failure_reason.clone(),
                    version: fold.version,
                    updated_at,
                },
            );
        }
        expected
    }
}

/// Counts of one table's comparison.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounts {
    /// Rows the fold expects.
    pub expected: usize,
    /// Rows the table holds.
    pub rows: usize,
    /// Expected rows the table lacks.
    pub missing: usize,
    /// Rows the fold does not expect.
    pub extra: usize,
    /// Rows with a field that differs.
    pub different: usize,
    /// Of those, rows whose version differs from the stream's last version.
    pub stale: usize,
}

fn compare<R>(
    table: &str,
    expected: &BTreeMap<Uuid, R>,
    actual: &HashMap<Uuid, R>,
    fields: fn(&R) -> Fields,
    report: &mut AuditReport,
) -> TableCounts {
    let mut counts = TableCounts {
        expected: expected.len(),
        rows: actual.len(),
        ..TableCounts::default()
    };
    for (key, want) in expected {
        let Some(have) = actual.get(key) else {
            counts.missing += 1;
            report.violation(Check::ReadModels, "missing", format!("{table} {key}"));
            continue;
        };
        let (want, have) = (fields(want), fields(have));
        let diffs: Vec<&str> = want
            .iter()
            .zip(&have)
            .filter(|(w, h)| w.1 != h.1)
            .map(|(w, _)| w.0)
            .collect();
        if diffs.is_empty() {
            continue;
        }
        counts.different += 1;
        if diffs.contains(&"version") {
            counts.stale += 1;
        }
        let shown: Vec<String> = want
            .iter()
            .zip(&have)
            .filter(|(w, h)| w.1 != h.1)
            .map(|(w, h)| format!("{} {} (log says {})", w.0, h.1, w.1))
            .collect();
        report.violation(
            Check::ReadModels,
            "different",
            format!("{table} {key}: {}", shown.join(", ")),
        );
    }
    let mut extra: Vec<&Uuid> = actual
        .keys()
        .filter(|k| !expected.contains_key(k))
        .collect();
    extra.sort();
    for key in extra {
        counts.extra += 1;
        report.violation(
            Check::ReadModels,
            "extra",
            format!("{table} {key}: no such stream in the log"),
        );
    }
    report.line(
        Check::ReadModels,
        format!(
            "{table}: {} expected from the log, {} rows, missing {}, extra {}, different {} (stale version {})",
            counts.expected, counts.rows, counts.missing, counts.extra, counts.different, counts.stale
        ),
    );
    counts
}

/// Compares every read model with the fold; one line per table.
pub fn check(folded: &Folded, read: &ReadRows, report: &mut AuditReport) {
    let expected = Expected::of(folded);
    compare(
        "read.products",
        &expected.products,
        &read.products,
        ProductRow::fields,
        report,
    );
    compare(
        "read.orders",
        &expected.orders,
        &read.orders,
        OrderRow::fields,
        report,
    );
    compare(
        "read.user_orders",
        &expected.user_orders,
        &read.user_orders,
        UserOrderRow::fields,
        report,
    );
    compare(
        "read.payments",
        &expected.payments,
        &read.payments,
        PaymentRow::fields,
        report,
    );
}
