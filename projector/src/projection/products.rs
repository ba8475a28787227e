//! `read.products`: the catalog with stock levels (available, reserved, sold),
//! one row per product stream.

use async_trait::async_trait;
use domain::product::ProductEvent;
use eventstore::EventEnvelope;
use sqlx::postgres::PgQueryResult;
use sqlx::PgConnection;

use super::{Projection, Schema, Spec, VersionTable};
use crate::apply::ApplyError;

/// Builds `read.products` from the `inventory` streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProductsProjection;

#[async_trait]
impl Projection for ProductsProjection {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: "products",
            tables: &["products"],
            stream_types: &["inventory"],
            version_table: VersionTable {
                table: "products",
                key: "product_id",
                has_updated_at: true,
            },
        }
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: Schema,
        event: &EventEnvelope,
    ) -> Result<(), ApplyError> {
        let table = schema.table("products");
        let decoded: ProductEvent = event
            .decode()
            .map_err(|source| ApplyError::decode(event, source))?;
        let result = match decoded {
            ProductEvent::ProductRegistered {
                name,
                price_cents,
                initial_stock,
            } => {
                sqlx::query(&format!(
                    "INSERT INTO {table}
                         (product_id, name, price_cents, available, reserved, sold, version, updated_at)
                     VALUES ($1, $2, $3, $4, 0, 0, $5, $6)
                     ON CONFLICT (product_id) DO NOTHING"
                ))
                .bind(event.stream_id)
                .bind(name)
                .bind(price_cents)
                .bind(initial_stock)
                .bind(event.stream_version)
                .bind(event.recorded_at)
                .execute(conn)
                .await
            }
            ProductEvent::ProductRestocked { quantity } => {
                move_stock(conn, &table, event, StockDelta::restock(quantity)).await
            }
            ProductEvent::StockReserved { quantity, .. } => {
                move_stock(conn, &table, event, StockDelta::reserve(quantity)).await
            }
            ProductEvent::ReservationReleased { quantity, .. } => {
                move_stock(conn, &table, event, StockDelta::release(quantity)).await
            }
            ProductEvent::ReservationCommitted { quantity, .. } => {
                move_stock(conn, &table, event, StockDelta::commit(quantity)).await
            }
        };
        result.map_err(|source| {
            ApplyError::database(format!("writing {} to {table}", event.event_type), source)
        })?;
        Ok(())
    }
}

/// How one event moves units between the available, reserved and sold counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StockDelta {
    available: i64,
    reserved: i64,
    sold: i64,
}

impl StockDelta {
    /// New units arrive: available += q.
    fn restock(quantity: i64) -> Self {
        Self {
            available: quantity,
            reserved: 0,
            sold: 0,
        }
    }

    /// Units are held for an order: available -= q, reserved += q.
    fn reserve(quantity: i64) -> Self {
        Self {
            available: -quantity,
            reserved: quantity,
            sold: 0,
        }
    }

    /// Held units go back: reserved -= q, available += q.
    fn release(quantity: i64) -> Self {
        Self {
            available: quantity,
            reserved: -quantity,
            sold: 0,
        }
    }

    /// Held units are sold: reserved -= q, sold += q.
    fn commit(quantity: i64) -> Self {
        Self {
            available: 0,
            reserved: -quantity,
            sold: quantity,
        }
    }
}

/// Applies `delta` to the product's row and moves its version to `event`'s
/// (guarded by the next-version rule).
async fn move_stock(
    conn: &mut PgConnection,
    table: &str,
    event: &EventEnvelope,
    delta: StockDelta,
) -> Result<PgQueryResult, sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE {table}
         SET available = available + $2, reserved = reserved + $3, sold = sold + $4,
             version = $5, updated_at = $6
         WHERE product_id = $1 AND version = $5 - 1"
    ))
    .bind(event.stream_id)
    .bind(delta.available)
    .bind(delta.reserved)
    .bind(delta.sold)
    .bind(event.stream_version)
    .bind(event.recorded_at)
    .execute(conn)
    .await
}
