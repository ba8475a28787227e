//! `read.products`: the catalog with stock levels, one row per product stream.

use async_trait::async_trait;
use domain::product::ProductEvent;
use eventstore::EventEnvelope;
use sqlx::PgConnection;

use super::{Projection, Schema, VersionTable};
use crate::apply::ApplyError;

/// Builds `read.products` from the `inventory` streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProductsProjection;

#[async_trait]
impl Projection for ProductsProjection {
    fn name(&self) -> &'static str {
        "products"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["products"]
    }

    fn stream_types(&self) -> &'static [&'static str] {
        &["inventory"]
    }

    fn version_table(&self) -> VersionTable {
        VersionTable {
            table: "products",
            key: "product_id",
            has_updated_at: true,
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
                sqlx::query(&format!(
                    "UPDATE {table}
                     SET available = available + $2, version = $3, updated_at = $4
                     WHERE product_id = $1 AND version = $3 - 1"
                ))
                .bind(event.stream_id)
                .bind(quantity)
                .bind(event.stream_version)
                .bind(event.recorded_at)
                .execute(conn)
                .await
            }
        };
        result.map_err(|source| {
            ApplyError::database(format!("writing {} to {table}", event.event_type), source)
        })?;
        Ok(())
    }
}
