//! `read.payments`: one row per payment stream with its status and the
//! provider's references (charge, refund, decline code, failure reason).
//!
//! The row is keyed by the payment id (the stream id) and carries the order
//! id, which is unique: the query API joins it to `read.orders`. Outcome
//! columns record facts and are never cleared, so a payment that failed at
//! its deadline and was captured late (then refunded) keeps its whole story.

use async_trait::async_trait;
use domain::payment::{PaymentEvent, PaymentStatus};
use eventstore::EventEnvelope;
use sqlx::PgConnection;

use super::{Projection, Schema, Spec, VersionTable};
use crate::apply::ApplyError;

/// Builds `read.payments` from the `payments` streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaymentsProjection;

#[async_trait]
impl Projection for PaymentsProjection {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: "payments",
            tables: &["payments"],
            stream_types: &["payments"],
            version_table: VersionTable {
                table: "payments",
                key: "payment_id",
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
        let table = schema.table("payments");
        let decoded: PaymentEvent = event
            .decode()
            .map_err(|source| ApplyError::decode(event, source))?;
        let outcome = match decoded {
            PaymentEvent::PaymentRequested {
                order_id,
                amount_cents,
                currency,
                token: _,
            } => return insert(conn, &table, event, order_id, amount_cents, currency).await,
            PaymentEvent::PaymentCaptured { charge_id, .. } => Outcome {
                status: PaymentStatus::Captured,
                column: "charge_id",
                value: charge_id,
            },
            PaymentEvent::PaymentDeclined { code, .. } => Outcome {
                status: PaymentStatus::Declined,
                column: "decline_code",
                value: code,
            },
            PaymentEvent::PaymentRefunded { refund_id, .. } => Outcome {
                status: PaymentStatus::Refunded,
                column: "refund_id",
                value: refund_id,
            },
            PaymentEvent::PaymentFailed { reason, .. } => Outcome {
                status: PaymentStatus::Failed,
                column: "failure_reason",
                value: reason,
            },
        };
        record(conn, &table, event, outcome).await
    }
}

/// A payment's new status and the one column that records why.
struct Outcome {
    status: PaymentStatus,
    /// A fixed column name (never input), so formatting it into SQL is safe.
    column: &'static str,
    value: String,
}

/// Creates the row of a requested payment.
async fn insert(
    conn: &mut PgConnection,
    table: &str,
    event: &EventEnvelope,
    order_id: uuid::Uuid,
    amount_cents: i64,
    currency: String,
) -> Result<(), ApplyError> {
    let inserted = sqlx::query(&format!(
        "INSERT INTO {table}
             (payment_id, order_id, status, amount_cents, currency, version, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT DO NOTHING"
    ))
    .bind(event.stream_id)
    .bind(order_id)
    .bind(PaymentStatus::Requested.as_str())
    .bind(amount_cents)
    .bind(currency)
    .bind(event.stream_version)
    .bind(event.recorded_at)
    .execute(conn)
    .await
    .map_err(|source| ApplyError::database(format!("inserting into {table}"), source))?;
    if inserted.rows_affected() == 0 {
        // Only reachable with a corrupted log: payment ids are derived from
        // order ids, so two payment streams never name one order.
        tracing::warn!(
            payment_id = %event.stream_id, %order_id,
            "another payment row already names this order; payment not projected"
        );
    }
    Ok(())
}

/// Records an outcome on the row, guarded by the next-version rule.
async fn record(
    conn: &mut PgConnection,
    table: &str,
    event: &EventEnvelope,
    outcome: Outcome,
) -> Result<(), ApplyError> {
    let column = outcome.column;
    sqlx::query(&format!(
        "UPDATE {table}
         SET status = $2, {column} = $3, version = $4, updated_at = $5
         WHERE payment_id = $1 AND version = $4 - 1"
    ))
    .bind(event.stream_id)
    .bind(outcome.status.as_str())
    .bind(outcome.value)
    .bind(event.stream_version)
    .bind(event.recorded_at)
    .execute(conn)
    .await
    .map_err(|source| {
        ApplyError::database(format!("writing {} to {table}", event.event_type), source)
    })?;
    Ok(())
}
