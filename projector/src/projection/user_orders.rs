//! `read.user_orders`: the index of orders per user (newest first).

use chrono::{DateTime, Utc};
use domain::order::OrderEvent;
use uuid::Uuid;

use super::event::micros;
use super::{Cell, Column, ColumnType as T, Decoded, Known, ReadModel, Spec};

/// Builds `read.user_orders` from the `orders` streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserOrdersProjection;

/// A row of `read.user_orders`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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

impl ReadModel for UserOrdersProjection {
    type Row = UserOrderRow;

    const SPEC: Spec = Spec {
        name: "user_orders",
        table: "user_orders",
        stream_types: &["orders"],
        key: "order_id",
        columns: &[
            Column::new("order_id", T::Uuid),
            Column::new("user_id", T::Text),
            Column::new("placed_at", T::Time),
            Column::new("version", T::Int),
        ],
        also_unique: None,
    };

    fn version(row: &UserOrderRow) -> i64 {
        row.version
    }

    fn evolve(row: Option<UserOrderRow>, event: &Decoded, known: &Known) -> Option<UserOrderRow> {
        let Known::Order(decoded) = known else {
            return row;
        };
        let row = match (row, decoded) {
            (
                None,
                OrderEvent::OrderPlaced {
                    user_id, placed_at, ..
                },
            ) => UserOrderRow {
                order_id: event.stream_id,
                user_id: user_id.clone(),
                placed_at: micros(*placed_at),
                version: 0,
            },
            // The index does not show the status: later events only move
            // the row's version.
            (row, _) => row?,
        };
        Some(UserOrderRow {
            version: event.stream_version,
            ..row
        })
    }

    fn cells<'a>(row: &'a UserOrderRow, out: &mut Vec<Cell<'a>>) {
        out.extend([
            Cell::Uuid(row.order_id),
            Cell::Text(&row.user_id),
            Cell::Time(row.placed_at),
            Cell::Int(row.version),
        ]);
    }
}
