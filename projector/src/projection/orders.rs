//! `read.orders`: one row per order stream with its status (and the reason
//! of a rejection or cancellation), lines and total.

use async_trait::async_trait;
use domain::order::{OrderEvent, OrderStatus};
use eventstore::EventEnvelope;
use sqlx::PgConnection;

use super::{Projection, Schema, Spec, VersionTable};
use crate::apply::ApplyError;

/// Builds `read.orders` from the `orders` streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrdersProjection;

#[async_trait]
impl Projection for OrdersProjection {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: "orders",
            tables: &["orders"],
            stream_types: &["orders"],
            version_table: VersionTable {
                table: "orders",
                key: "order_id",
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
        let table = schema.table("orders");
        let decoded: OrderEvent = event
            .decode()
            .map_err(|source| ApplyError::decode(event, source))?;
        match decoded {
            OrderEvent::OrderPlaced {
                user_id,
                lines,
                total_cents,
                payment_token: _,
                placed_at,
            } => {
                let lines = serde_json::to_value(&lines).expect("order lines serialize");
                sqlx::query(&format!(
                    "INSERT INTO {table}
                         (order_id, user_id, status, reason, lines, total_cents, version, placed_at, updated_at)
                     VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, $8)
                     ON CONFLICT (order_id) DO NOTHING"
                ))
                .bind(event.stream_id)
                .bind(user_id)
                .bind(OrderStatus::Pending.as_str())
                .bind(lines)
                .bind(total_cents)
                .bind(event.stream_version)
                .bind(placed_at)
                .bind(event.recorded_at)
                .execute(conn)
                .await
                .map_err(|source| ApplyError::database(format!("inserting into {table}"), source))?;
            }
            OrderEvent::OrderAwaitingPayment { .. } => {
                set_status(conn, &table, event, OrderStatus::AwaitingPayment, None).await?;
            }
            OrderEvent::OrderConfirmed { .. } => {
                set_status(conn, &table, event, OrderStatus::Confirmed, None).await?;
            }
            OrderEvent::OrderRejected { reason } => {
                set_status(conn, &table, event, OrderStatus::Rejected, Some(reason)).await?;
            }
            OrderEvent::OrderCancelled { reason } => {
                set_status(conn, &table, event, OrderStatus::Cancelled, Some(reason)).await?;
            }
        }
        Ok(())
    }
}

/// Moves the order's row to `status` (and `reason`, when given) at `event`'s
/// version and time, guarded by the next-version rule.
async fn set_status(
    conn: &mut PgConnection,
    table: &str,
    event: &EventEnvelope,
    status: OrderStatus,
    reason: Option<String>,
) -> Result<(), ApplyError> {
    sqlx::query(&format!(
        "UPDATE {table}
         SET status = $2, reason = COALESCE($3, reason), version = $4, updated_at = $5
         WHERE order_id = $1 AND version = $4 - 1"
    ))
    .bind(event.stream_id)
    .bind(status.as_str())
    .bind(reason)
    .bind(event.stream_version)
    .bind(event.recorded_at)
    .execute(conn)
    .await
    .map_err(|source| {
        ApplyError::database(format!("writing {} to {table}", event.event_type), source)
    })?;
    Ok(())
}
