//! `read.user_orders`: the index of orders per user (newest first).

use async_trait::async_trait;
use domain::order::OrderEvent;
use eventstore::EventEnvelope;
use sqlx::PgConnection;

use super::{Projection, Schema, Spec, VersionTable};
use crate::apply::ApplyError;

/// Builds `read.user_orders` from the `orders` streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserOrdersProjection;

#[async_trait]
impl Projection for UserOrdersProjection {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: "user_orders",
            tables: &["user_orders"],
            stream_types: &["orders"],
            version_table: VersionTable {
                table: "user_orders",
                key: "order_id",
                has_updated_at: false,
            },
        }
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: Schema,
        event: &EventEnvelope,
    ) -> Result<(), ApplyError> {
        let table = schema.table("user_orders");
        let decoded: OrderEvent = event
            .decode()
            .map_err(|source| ApplyError::decode(event, source))?;
        match decoded {
            OrderEvent::OrderPlaced {
                user_id, placed_at, ..
            } => {
                sqlx::query(&format!(
                    "INSERT INTO {table} (order_id, user_id, placed_at, version)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (order_id) DO NOTHING"
                ))
                .bind(event.stream_id)
                .bind(user_id)
                .bind(placed_at)
                .bind(event.stream_version)
                .execute(conn)
                .await
                .map_err(|source| {
                    ApplyError::database(format!("inserting into {table}"), source)
                })?;
            }
            // The index does not show the status: later events only move
            // the row's version, so the next-version rule keeps holding.
            OrderEvent::OrderAwaitingPayment { .. }
            | OrderEvent::OrderConfirmed { .. }
            | OrderEvent::OrderRejected { .. }
            | OrderEvent::OrderCancelled { .. } => {
                self.advance_version(conn, schema, event).await?;
            }
        }
        Ok(())
    }
}
