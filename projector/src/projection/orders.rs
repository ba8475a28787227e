//! `read.orders`: one row per order stream with its status (and the reason
//! of a rejection or cancellation), lines and total.

use chrono::{DateTime, Utc};
use domain::order::{OrderEvent, OrderStatus};
use uuid::Uuid;

use super::event::micros;
use super::{Cell, Column, ColumnType as T, Decoded, Known, ReadModel, Spec};

/// Builds `read.orders` from the `orders` streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrdersProjection;

/// A row of `read.orders`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OrderRow {
    /// The order (stream) id.
    pub order_id: Uuid,
    /// Who placed it.
    pub user_id: String,
    /// Its status's wire name.
    pub status: String,
    /// Why it was rejected or cancelled.
    pub reason: Option<String>,
    /// The priced lines, as JSON text.
    pub lines: String,
    /// Sum of the lines in cents.
    pub total_cents: i64,
    /// Stream version folded in.
    pub version: i64,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
    /// When the last event folded in was recorded.
    pub updated_at: DateTime<Utc>,
}

impl ReadModel for OrdersProjection {
    type Row = OrderRow;

    const SPEC: Spec = Spec {
        name: "orders",
        table: "orders",
        stream_types: &["orders"],
        key: "order_id",
        columns: &[
            Column::new("order_id", T::Uuid),
            Column::new("user_id", T::Text),
            Column::new("status", T::Text),
            Column::new("reason", T::OptText),
            Column::new("lines", T::Json),
            Column::new("total_cents", T::Int),
            Column::new("version", T::Int),
            Column::new("placed_at", T::Time),
            Column::new("updated_at", T::Time),
        ],
        also_unique: None,
    };

    fn version(row: &OrderRow) -> i64 {
        row.version
    }

    fn evolve(row: Option<OrderRow>, event: &Decoded, known: &Known) -> Option<OrderRow> {
        let Known::Order(decoded) = known else {
            return row;
        };
        let (status, reason) = match decoded {
            OrderEvent::OrderPlaced {
                user_id,
                lines,
                total_cents,
                payment_token: _,
                placed_at,
            } => {
                // A second placement (only a corrupted log has one) changes nothing.
                let row = row.unwrap_or_else(|| OrderRow {
                    order_id: event.stream_id,
                    user_id: user_id.clone(),
                    status: OrderStatus::Pending.as_str().to_owned(),
                    reason: None,
                    lines: serde_json::to_string(lines).expect("order lines serialize"),
                    total_cents: *total_cents,
                    version: 0,
                    placed_at: micros(*placed_at),
                    updated_at: event.recorded_at,
                });
                return Some(OrderRow {
                    version: event.stream_version,
                    updated_at: event.recorded_at,
                    ..row
                });
            }
            OrderEvent::OrderAwaitingPayment { .. } => (OrderStatus::AwaitingPayment, None),
            OrderEvent::OrderConfirmed { .. } => (OrderStatus::Confirmed, None),
            OrderEvent::OrderRejected { reason } => (OrderStatus::Rejected, Some(reason)),
            OrderEvent::OrderCancelled { reason } => (OrderStatus::Cancelled, Some(reason)),
        };
        let row = row?;
        Some(OrderRow {
            status: status.as_str().to_owned(),
            reason: reason.cloned().or(row.reason),
            version: event.stream_version,
            updated_at: event.recorded_at,
            ..row
        })
    }

    fn cells<'a>(row: &'a OrderRow, out: &mut Vec<Cell<'a>>) {
        out.extend([
            Cell::Uuid(row.order_id),
            Cell::Text(&row.user_id),
            Cell::Text(&row.status),
            Cell::OptText(row.reason.as_deref()),
            Cell::Json(&row.lines),
            Cell::Int(row.total_cents),
            Cell::Int(row.version),
            Cell::Time(row.placed_at),
            Cell::Time(row.updated_at),
        ]);
    }
}
