//! The crate's one error type: every failed request becomes a problem+json
//! response, with internal details kept in the logs.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use platform::http::Problem;

/// Why a request failed (declines are answers, not errors: see [`crate::view`]).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// 400: a missing or malformed header, parameter or body field.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: no such charge.
    #[error("not found: {0}")]
    NotFound(String),
    /// 422: the `Idempotency-Key` was first used with a different body.
    #[error("idempotency key reused with a different request")]
    KeyReused,
    /// 422: the charge cannot be refunded (it was declined).
    #[error("not refundable: {0}")]
    NotRefundable(String),
    /// 503: simulated outage (`--failure-rate`, `tok_flaky*`); nothing was recorded.
    #[error("simulated outage: {0}")]
    Unavailable(String),
    /// 504: simulated lost request (`tok_hang*`); nothing was recorded.
    #[error("simulated upstream timeout")]
    UpstreamTimeout,
    /// 503 when the ledger database is unreachable, 500 otherwise.
    #[error("{action}")]
    Database {
        /// What was being done, for the logs.
        action: String,
        /// The underlying failure.
        #[source]
        source: sqlx::Error,
    },
    /// 500: anything else unexpected.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Attaches what was being done to a database error.
pub trait DbContext<T> {
    /// Maps the error to [`GatewayError::Database`] with `action` as context.
    fn during(self, action: &str) -> Result<T, GatewayError>;
}

impl<T> DbContext<T> for Result<T, sqlx::Error> {
    fn during(self, action: &str) -> Result<T, GatewayError> {
        self.map_err(|source| GatewayError::Database {
            action: action.to_owned(),
            source,
        })
    }
}

impl GatewayError {
    /// The problem this error is reported as (and logs what is not reported).
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::BadRequest(detail) => Problem::malformed(detail.clone()),
            Self::NotFound(detail) => Problem::not_found(detail.clone()),
            Self::KeyReused => Problem::unprocessable(
                "idempotency-key-reused",
                "this Idempotency-Key was already used with a different request body",
            ),
            Self::NotRefundable(detail) => {
                Problem::unprocessable("charge-not-refundable", detail.clone())
            }
            Self::Unavailable(detail) => Problem::unavailable(detail.clone()),
            Self::UpstreamTimeout => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream-timeout",
                "Gateway timeout",
                "the card network did not answer in time; no charge was made",
            ),
            Self::Database { action, source } => {
                Problem::from_database(action, source, "the ledger is unavailable; retry later")
            }
            Self::Internal(error) => {
                tracing::error!(error = ?error, "internal error");
                Problem::internal()
            }
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        self.to_problem().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_statuses() {
        let status = |error: GatewayError| error.into_response().status();
        assert_eq!(status(GatewayError::BadRequest("x".into())), 400);
        assert_eq!(status(GatewayError::NotFound("x".into())), 404);
        assert_eq!(status(GatewayError::KeyReused), 422);
        assert_eq!(status(GatewayError::NotRefundable("x".into())), 422);
        assert_eq!(status(GatewayError::Unavailable("x".into())), 503);
        assert_eq!(status(GatewayError::UpstreamTimeout), 504);
        let database = |source| GatewayError::Database {
            action: "x".into(),
            source,
        };
        assert_eq!(status(database(sqlx::Error::PoolTimedOut)), 503);
        assert_eq!(status(database(sqlx::Error::RowNotFound)), 500);
        assert_eq!(status(anyhow::anyhow!("boom").into()), 500);
    }

    #[test]
    fn internal_details_are_not_returned() {
        let problem = GatewayError::from(anyhow::anyhow!("secret table")).to_problem();
        assert!(!problem.detail.contains("secret"));
    }
}
