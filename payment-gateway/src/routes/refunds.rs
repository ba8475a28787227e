//! `POST /charges/{id}/refund`: full refunds, idempotent per charge.

use anyhow::Context as _;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};

use crate::error::{DbContext as _, GatewayError};
use crate::extract::{ApiPath, OptionalIdempotencyKey};
use crate::ledger::{self, RefundOutcome};
use crate::state::AppState;
use crate::view::ChargeView;

/// The refund route (fault injection is layered on by [`crate::router`]).
pub fn router() -> Router<AppState> {
    Router::new().route("/charges/{charge_id}/refund", post(refund))
}

/// Refunds a captured charge in full: 200 with the refunded charge, the same
/// again for a charge refunded before, 422 for a declined one, 404 unknown.
/// Refunds are full, so a charge is refunded at most once whatever the key:
/// an `Idempotency-Key` is accepted (and validated) but not needed.
#[tracing::instrument(skip(state, key), fields(key = ?key.0))]
async fn refund(
    State(state): State<AppState>,
    ApiPath(charge_id): ApiPath<String>,
    key: OptionalIdempotencyKey,
) -> Result<Json<ChargeView>, GatewayError> {
    let pool = state.pool().clone();
    let id = charge_id.clone();
    // Spawned: a client that gives up must not cancel the refund half-way.
    let outcome = tokio::spawn(async move { ledger::refund(&pool, &id).await })
        .await
        .context("refund task")?
        .during("refunding a charge")?;
    match outcome {
        RefundOutcome::Refunded(charge) => Ok(Json(ChargeView::from(&charge))),
        RefundOutcome::Declined(_) => Err(GatewayError::NotRefundable(format!(
            "charge {charge_id} was declined; there is nothing to refund"
        ))),
        RefundOutcome::NotFound => Err(GatewayError::NotFound(format!("no charge {charge_id}"))),
    }
}
