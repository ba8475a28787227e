//! How charges are shown over HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use platform::http::Problem;
use serde::Serialize;
use uuid::Uuid;

use crate::ledger::{Charge, ChargeStatus};

/// A charge as JSON; the refund and decline members appear only when set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChargeView {
    /// `ch_<uuid simple>`.
    pub charge_id: String,
    /// `captured`, `declined` or `refunded`.
    pub status: &'static str,
    /// Amount in minor units.
    pub amount_cents: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The merchant's reference.
    pub reference: Uuid,
    /// When the charge was recorded.
    pub created_at: DateTime<Utc>,
    /// Why it was declined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    /// When it was refunded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded_at: Option<DateTime<Utc>>,
    /// The refund's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
}

impl From<&Charge> for ChargeView {
    fn from(charge: &Charge) -> Self {
        Self {
            charge_id: charge.charge_id.clone(),
            status: charge.status.as_str(),
            amount_cents: charge.amount_cents,
            currency: charge.currency.clone(),
            reference: charge.reference,
            created_at: charge.created_at,
            decline_code: charge.decline_code.clone(),
            refunded_at: charge.refunded_at,
            refund_id: charge.refund_id.clone(),
        }
    }
}

/// `{"charges": [...]}`.
#[derive(Debug, Clone, Serialize)]
pub struct ChargeList {
    /// The charges, oldest first.
    pub charges: Vec<ChargeView>,
}

/// The answer to the `POST /charges` that created `charge`: 201 with the
/// charge as it was then (captured), or the 402 decline problem. Built only
/// from what never changes, so every idempotent replay is identical.
pub fn creation_response(charge: &Charge) -> Response {
    match charge.status {
        ChargeStatus::Declined => decline_problem(charge).into_response(),
        ChargeStatus::Captured | ChargeStatus::Refunded => {
            let view = ChargeView {
                status: ChargeStatus::Captured.as_str(),
                refunded_at: None,
                refund_id: None,
                ..ChargeView::from(charge)
            };
            (StatusCode::CREATED, Json(view)).into_response()
        }
    }
}

/// 402 problem with the `decline_code` and `charge_id` extension members.
pub fn decline_problem(charge: &Charge) -> Problem {
    let code = charge.decline_code.as_deref().unwrap_or("card_declined");
    Problem::new(
        StatusCode::PAYMENT_REQUIRED,
        "card-declined",
        "Payment declined",
        format!("the card was declined ({code})"),
    )
    .with_extension("decline_code", code)
    .with_extension("charge_id", charge.charge_id.as_str())
}
