//! `read.payments`: one row per payment stream with its status and the
//! provider's references (charge, refund, decline code, failure reason).
//!
//! The row is keyed by the payment id (the stream id) and carries the order
//! id, which is unique: the query API joins it to `read.orders`. Outcome
//! columns record facts and are never cleared, so a payment that failed at
//! its deadline and was captured late (then refunded) keeps its whole story.

use chrono::{DateTime, Utc};
use domain::payment::{PaymentEvent, PaymentStatus};
use uuid::Uuid;

use super::{Cell, Column, ColumnType as T, Decoded, Known, ReadModel, Spec};

/// Builds `read.payments` from the `payments` streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaymentsProjection;

/// A row of `read.payments`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PaymentRow {
    /// The payment (stream) id.
    pub payment_id: Uuid,
    /// The order it pays (unique).
    pub order_id: Uuid,
    /// Its status's wire name.
    pub status: String,
    /// Amount in cents.
    pub amount_cents: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// The provider's charge, once captured.
    pub charge_id: Option<String>,
    /// The provider's refund, once refunded.
    pub refund_id: Option<String>,
    /// The provider's decline code, once declined.
    pub decline_code: Option<String>,
    /// Why no capture happened before the deadline.
    pub failure_reason: Option<String>,
    /// Stream version folded in.
    pub version: i64,
    /// When the last event folded in was recorded.
    pub updated_at: DateTime<Utc>,
}

impl ReadModel for PaymentsProjection {
    type Row = PaymentRow;

    const SPEC: Spec = Spec {
        name: "payments",
        table: "payments",
        stream_types: &["payments"],
        key: "payment_id",
        columns: &[
            Column::new("payment_id", T::Uuid),
            Column::new("order_id", T::Uuid),
            Column::new("status", T::Text),
            Column::new("amount_cents", T::Int),
            Column::new("currency", T::Text),
            Column::new("charge_id", T::OptText),
            Column::new("refund_id", T::OptText),
            Column::new("decline_code", T::OptText),
            Column::new("failure_reason", T::OptText),
            Column::new("version", T::Int),
            Column::new("updated_at", T::Time),
        ],
        // Payment ids are derived from order ids, so only a corrupted log has
        // two payment streams naming one order; the second is not projected.
        also_unique: Some("order_id"),
    };

    fn version(row: &PaymentRow) -> i64 {
        row.version
    }

    fn evolve(row: Option<PaymentRow>, event: &Decoded, known: &Known) -> Option<PaymentRow> {
        let Known::Payment(decoded) = known else {
            return row;
        };
        let mut row = match (row, decoded) {
            (
                None,
                PaymentEvent::PaymentRequested {
                    order_id,
                    amount_cents,
                    currency,
                    token: _,
                },
            ) => PaymentRow {
                payment_id: event.stream_id,
                order_id: *order_id,
                status: PaymentStatus::Requested.as_str().to_owned(),
                amount_cents: *amount_cents,
                currency: currency.clone(),
                charge_id: None,
                refund_id: None,
                decline_code: None,
                failure_reason: None,
                version: 0,
                updated_at: event.recorded_at,
            },
            (row, _) => row?,
        };
        let (status, column, value) = match decoded {
            // A second request (only a corrupted log has one) changes nothing.
            PaymentEvent::PaymentRequested { .. } => {
                row.version = event.stream_version;
                row.updated_at = event.recorded_at;
                return Some(row);
            }
            PaymentEvent::PaymentCaptured { charge_id, .. } => {
                (PaymentStatus::Captured, &mut row.charge_id, charge_id)
            }
            PaymentEvent::PaymentDeclined { code, .. } => {
                (PaymentStatus::Declined, &mut row.decline_code, code)
            }
            PaymentEvent::PaymentRefunded { refund_id, .. } => {
                (PaymentStatus::Refunded, &mut row.refund_id, refund_id)
            }
            PaymentEvent::PaymentFailed { reason, .. } => {
                (PaymentStatus::Failed, &mut row.failure_reason, reason)
            }
        };
        *column = Some(value.clone());
        row.status = status.as_str().to_owned();
        row.version = event.stream_version;
        row.updated_at = event.recorded_at;
        Some(row)
    }

    fn cells<'a>(row: &'a PaymentRow, out: &mut Vec<Cell<'a>>) {
        out.extend([
            Cell::Uuid(row.payment_id),
            Cell::Uuid(row.order_id),
            Cell::Text(&row.status),
            Cell::Int(row.amount_cents),
            Cell::Text(&row.currency),
            Cell::OptText(row.charge_id.as_deref()),
            Cell::OptText(row.refund_id.as_deref()),
            Cell::OptText(row.decline_code.as_deref()),
            Cell::OptText(row.failure_reason.as_deref()),
            Cell::Int(row.version),
            Cell::Time(row.updated_at),
        ]);
    }
}
