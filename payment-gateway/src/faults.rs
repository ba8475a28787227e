//! Load-test faults as middleware: extra latency on every response of the
//! charge resources, and random 503s before a write does anything.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::GatewayError;
use crate::state::AppState;

/// Delays the response by `--latency-ms`.
pub async fn add_latency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let latency = state.behaviour().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    response
}

/// Answers 503 with probability `--failure-rate`, before anything is read or written.
pub async fn inject_failures(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.behaviour().injects_failure() {
        tracing::info!(uri = %request.uri(), "injecting a simulated failure");
        return GatewayError::Unavailable(
            "simulated provider outage (--failure-rate); nothing was recorded".into(),
        )
        .into_response();
    }
    next.run(request).await
}
