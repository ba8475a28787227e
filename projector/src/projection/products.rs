//! `read.products`: the catalog with stock levels (available, reserved, sold),
//! one row per product stream.

use chrono::{DateTime, Utc};
use domain::product::ProductEvent;
use uuid::Uuid;

use super::{Cell, Column, ColumnType as T, Decoded, Known, ReadModel, Spec};

/// Builds `read.products` from the `inventory` streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProductsProjection;

/// A row of `read.products`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProductRow {
    /// The product (stream) id.
    pub product_id: Uuid,
    /// Display name.
    pub name: String,
    /// Unit price in cents.
    pub price_cents: i64,
    /// Units free to reserve.
    pub available: i64,
    /// Units held for unpaid orders.
    pub reserved: i64,
    /// Units sold.
    pub sold: i64,
    /// Stream version folded in.
    pub version: i64,
    /// When the last event folded in was recorded.
    pub updated_at: DateTime<Utc>,
}

impl ReadModel for ProductsProjection {
    type Row = ProductRow;

    const SPEC: Spec = Spec {
        name: "products",
        table: "products",
        stream_types: &["inventory"],
        key: "product_id",
        columns: &[
            Column::new("product_id", T::Uuid),
            Column::new("name", T::Text),
            Column::new("price_cents", T::Int),
            Column::new("available", T::Int),
            Column::new("reserved", T::Int),
            Column::new("sold", T::Int),
            Column::new("version", T::Int),
            Column::new("updated_at", T::Time),
        ],
        also_unique: None,
    };

    fn version(row: &ProductRow) -> i64 {
        row.version
    }

    fn evolve(row: Option<ProductRow>, event: &Decoded, known: &Known) -> Option<ProductRow> {
        let Known::Product(decoded) = known else {
            return row;
        };
        let (available, reserved, sold) = match decoded {
            ProductEvent::ProductRegistered {
                name,
                price_cents,
                initial_stock,
            } => {
                // A second registration (only a corrupted log has one) changes nothing.
                let row = row.unwrap_or_else(|| ProductRow {
                    product_id: event.stream_id,
                    name: name.clone(),
                    price_cents: *price_cents,
                    available: *initial_stock,
                    reserved: 0,
                    sold: 0,
                    version: 0,
                    updated_at: event.recorded_at,
                });
                return Some(ProductRow {
                    version: event.stream_version,
                    updated_at: event.recorded_at,
                    ..row
                });
            }
            // New units arrive.
            ProductEvent::ProductRestocked { quantity } => (*quantity, 0, 0),
            // Units are held for an order.
            ProductEvent::StockReserved { quantity, .. } => (-quantity, *quantity, 0),
            // Held units go back.
            ProductEvent::ReservationReleased { quantity, .. } => (*quantity, -quantity, 0),
            // Held units are sold.
            ProductEvent::ReservationCommitted { quantity, .. } => (0, -quantity, *quantity),
        };
        let row = row?;
        Some(ProductRow {
            available: row.available + available,
            reserved: row.reserved + reserved,
            sold: row.sold + sold,
            version: event.stream_version,
            updated_at: event.recorded_at,
            ..row
        })
    }

    fn cells<'a>(row: &'a ProductRow, out: &mut Vec<Cell<'a>>) {
        out.extend([
            Cell::Uuid(row.product_id),
            Cell::Text(&row.name),
            Cell::Int(row.price_cents),
            Cell::Int(row.available),
            Cell::Int(row.reserved),
            Cell::Int(row.sold),
            Cell::Int(row.version),
            Cell::Time(row.updated_at),
        ]);
    }
}
