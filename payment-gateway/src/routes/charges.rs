//! `POST /charges`, `GET /charges/{id}` and `GET /charges?reference=`.

use anyhow::Context as _;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use platform::http::ApiJson;
use serde::Deserialize;
use uuid::Uuid;

use crate::behaviour::{Scenario, FLAKY_FAILURES};
use crate::error::{DbContext as _, GatewayError};
use crate::extract::{ApiPath, ApiQuery, IdempotencyKey};
use crate::ledger::{self, Recorded};
use crate::request::ChargeBody;
use crate::state::AppState;
use crate::view::{self, ChargeList, ChargeView};

/// `POST /charges` (fault injection is layered on by [`crate::router`]).
pub fn write_router() -> Router<AppState> {
    Router::new().route("/charges", post(create))
}

/// `GET /charges/{id}` and `GET /charges?reference=`.
pub fn read_router() -> Router<AppState> {
    Router::new()
        .route("/charges", get(list))
        .route("/charges/{charge_id}", get(show))
}

/// Charges a card: 201 captured, 402 declined (recorded too), 400 invalid,
/// 422 for a key reused with another body; the token picks the scenario.
#[tracing::instrument(skip(state, key, body), fields(key = %key.0, token = %body.token))]
async fn create(
    State(state): State<AppState>,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<ChargeBody>,
) -> Result<Response, GatewayError> {
    body.validate()?;
    let slow = state.behaviour().slow_response;
    let scenario = Scenario::of(&body.token);
    match scenario {
        Scenario::Hang => {
            tokio::time::sleep(slow).await;
            return Err(GatewayError::UpstreamTimeout);
        }
        Scenario::Flaky => {
            let attempt = ledger::count_flaky_attempt(state.pool(), &key.0)
                .await
                .during("counting a flaky attempt")?;
            if attempt <= FLAKY_FAILURES {
                return Err(GatewayError::Unavailable(format!(
                    "simulated transient failure ({attempt} of {FLAKY_FAILURES} for this card); \
                     nothing was recorded, retry with the same Idempotency-Key"
                )));
            }
        }
        Scenario::Capture | Scenario::Decline(_) | Scenario::Timeout => {}
    }
    let decline_code = match &scenario {
        Scenario::Decline(code) => Some(code.clone()),
        _ => None,
    };
    let new_charge = body.to_new_charge(&key.0, decline_code);
    let pool = state.pool().clone();
    // Spawned: a client that gives up (tok_timeout*) must not cancel the recording.
    let recorded = tokio::spawn(async move { ledger::record_charge(&pool, &new_charge).await })
        .await
        .context("charge recording task")?
        .during("recording a charge")?;
    let charge = match recorded {
        Recorded::Created(charge) => charge,
        Recorded::Existing(charge) if charge.request_hash == body.fingerprint() => charge,
        Recorded::Existing(_) => return Err(GatewayError::KeyReused),
    };
    if scenario == Scenario::Timeout {
        tokio::time::sleep(slow).await;
    }
    Ok(view::creation_response(&charge))
}

/// One charge, with its refund when refunded; 404 unknown.
#[tracing::instrument(skip(state))]
async fn show(
    State(state): State<AppState>,
    ApiPath(charge_id): ApiPath<String>,
) -> Result<Json<ChargeView>, GatewayError> {
    let charge = ledger::find(state.pool(), &charge_id)
        .await
        .during("reading a charge")?
        .ok_or_else(|| GatewayError::NotFound(format!("no charge {charge_id}")))?;
    Ok(Json(ChargeView::from(&charge)))
}

/// `?reference=<uuid>` (required).
#[derive(Debug, Deserialize)]
struct ReferenceQuery {
    reference: Uuid,
}

/// Every charge of a reference, oldest first (possibly none).
#[tracing::instrument(skip(state))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ReferenceQuery>,
) -> Result<Json<ChargeList>, GatewayError> {
    let charges = ledger::charges_for(state.pool(), query.reference)
        .await
        .during("listing charges")?;
    Ok(Json(ChargeList {
        charges: charges.iter().map(ChargeView::from).collect(),
    }))
}
