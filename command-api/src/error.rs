//! The crate's one error type and its mapping to problem+json responses.
//!
//! Domain refusals are the user's problem (4xx, with the domain's message);
//! infrastructure failures are ours (503 when the database is unreachable,
//! 500 otherwise, details logged and never returned).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::order::OrderError;
use domain::product::ProductError;
use eventstore::AppendError;
use platform::http::Problem;
use uuid::Uuid;

/// Why a command request failed. Cloneable: one failed batch answers each
/// of its commands with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// A product rule refused the command (422; 404 for a product that does not exist).
    #[error(transparent)]
    Product(#[from] ProductError),
    /// An order rule refused the command (422; 404 for an order that does not exist).
    #[error(transparent)]
    Order(#[from] OrderError),
    /// The addressed aggregate does not exist (404).
    #[error("{kind} {id} not found")]
    NotFound {
        /// What was looked for, e.g. `"product"`.
        kind: &'static str,
        /// Its id.
        id: Uuid,
    },
    /// The id belongs to a stream of another type (422).
    #[error("id {id} is already used by a stream of type {actual:?}, not {expected:?}")]
    ForeignStream {
        /// The id.
        id: Uuid,
        /// The stream type the command needed.
        expected: String,
        /// The stream type found.
        actual: String,
    },
    /// `If-Match` named another version than the stream's current one (412).
    #[error("stream {stream_id} is at version {actual}, but If-Match expected {expected}")]
    VersionMismatch {
        /// The stream.
        stream_id: Uuid,
        /// The version sent in `If-Match`.
        expected: i64,
        /// The stream's version.
        actual: i64,
    },
    /// Another writer appended between load and append; retried internally (409 if it escapes).
    #[error("stream {stream_id} moved to version {actual} while the command was being decided")]
    Conflict {
        /// The stream.
        stream_id: Uuid,
        /// The stream's version at the time of the conflict.
        actual: i64,
    },
    /// Every attempt lost an optimistic-concurrency race (409).
    #[error("stream {stream_id} kept changing concurrently; gave up after {attempts} attempts")]
    RetriesExhausted {
        /// The stream.
        stream_id: Uuid,
        /// How many attempts were made.
        attempts: u32,
    },
    /// A request with the same `Idempotency-Key` is being processed right now (409).
    #[error("a request with this Idempotency-Key is still in flight")]
    IdempotencyKeyInFlight,
    /// The `Idempotency-Key` was already used for a different request (422).
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    /// A request header is malformed (400).
    #[error("invalid {header} header: {reason}")]
    InvalidHeader {
        /// The header name.
        header: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The database failed (503 when unreachable, 500 otherwise).
    #[error("database error while {action}: {source}")]
    Database {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// A bug or corrupted data (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A database error that happened while doing `action`.
    pub fn database(action: impl Into<String>, source: sqlx::Error) -> Self {
        Self::Database {
            action: action.into(),
            source: Arc::new(source),
        }
    }

    /// Whether the whole command attempt may be retried (an optimistic
    /// conflict, a deadlock or a serialization failure).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Conflict { .. } => true,
            Self::Database { source, .. } => platform::db::is_retryable_conflict(source),
            _ => false,
        }
    }

    /// Whether this outcome is deterministic for the request and is
    /// recorded under its `Idempotency-Key` (404, 412, 422 from the domain).
    /// Transient outcomes (409, 5xx) are not: the client may retry them.
    pub fn is_recordable(&self) -> bool {
        matches!(
            self,
            Self::Product(_)
                | Self::Order(_)
                | Self::NotFound { .. }
                | Self::ForeignStream { .. }
                | Self::VersionMismatch { .. }
        )
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.problem().status_code()
    }

    /// The problem+json body shown to the client (no internal details).
    pub fn problem(&self) -> Problem {
        match self {
            Self::Product(ProductError::NotRegistered) => Problem::not_found(self.to_string()),
            Self::Product(error) => Problem::unprocessable(product_slug(error), error.to_string()),
            Self::Order(OrderError::NotPlaced) => Problem::not_found(self.to_string()),
            Self::Order(error) => Problem::unprocessable(order_slug(error), error.to_string()),
            Self::NotFound { .. } => Problem::not_found(self.to_string()),
            Self::ForeignStream { id, .. } => Problem::unprocessable(
                "id-in-use",
                format!("id {id} is already used by another kind of entity"),
            ),
            Self::VersionMismatch { .. } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "version-mismatch",
                "Precondition failed",
                self.to_string(),
            ),
            Self::Conflict { stream_id, .. } | Self::RetriesExhausted { stream_id, .. } => {
                Problem::new(
                    StatusCode::CONFLICT,
                    "concurrency-conflict",
                    "Conflict",
                    format!("stream {stream_id} was changed concurrently; retry the request"),
                )
            }
            Self::IdempotencyKeyInFlight => Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-in-flight",
                "Conflict",
                "request with this Idempotency-Key is still in flight; retry later",
            ),
            Self::IdempotencyKeyReused => {
                Problem::unprocessable("idempotency-key-reused", self.to_string())
            }
            Self::InvalidHeader { .. } => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-header",
                "Malformed request",
                self.to_string(),
            ),
            Self::Database { source, .. } if platform::db::is_unavailable(source) => {
                Problem::unavailable("the database is unavailable; nothing was written")
            }
            Self::Database { .. } | Self::Internal(_) => Problem::internal(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let status = problem.status_code();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, "dependency unavailable");
        } else if status.is_server_error() {
            tracing::error!(error = %self, "command failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "command refused");
        }
        problem.into_response()
    }
}

impl From<AppendError> for ApiError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::Conflict {
                stream_id, actual, ..
            } => Self::Conflict { stream_id, actual },
            AppendError::WrongStreamType {
                stream_id,
                requested,
                actual,
            } => Self::ForeignStream {
                id: stream_id,
                expected: requested,
                actual,
            },
            AppendError::Empty => Self::Internal("a command decided to append no events".into()),
            AppendError::Database { stream_id, source } => {
                Self::database(format!("appending to stream {stream_id}"), source)
            }
        }
    }
}

/// Adds what was being done to a database error.
pub(crate) trait DbContext<T> {
    /// Maps the error to [`ApiError::Database`] with `action` as context.
    fn during(self, action: impl FnOnce() -> String) -> Result<T, ApiError>;
}

impl<T> DbContext<T> for Result<T, sqlx::Error> {
    fn during(self, action: impl FnOnce() -> String) -> Result<T, ApiError> {
        self.map_err(|source| ApiError::database(action(), source))
    }
}

/// Stable problem type slug of each product rule.
fn product_slug(error: &ProductError) -> &'static str {
    match error {
        ProductError::AlreadyRegistered => "product-already-registered",
        ProductError::NotRegistered => "product-not-registered",
        ProductError::EmptyName => "empty-name",
        ProductError::NameTooLong { .. } => "name-too-long",
        ProductError::NonPositivePrice(_) => "non-positive-price",
        ProductError::NegativeInitialStock(_) => "negative-initial-stock",
        ProductError::NonPositiveQuantity(_) => "non-positive-quantity",
        ProductError::StockOverflow => "stock-overflow",
        ProductError::InsufficientStock { .. } => "insufficient-stock",
        ProductError::NoActiveReservation(_) => "no-active-reservation",
    }
}

/// Stable problem type slug of each order rule.
fn order_slug(error: &OrderError) -> &'static str {
    match error {
        OrderError::AlreadyPlaced => "order-already-placed",
        OrderError::InvalidUserId => "invalid-user-id",
        OrderError::NoLines => "no-lines",
        OrderError::TooManyLines { .. } => "too-many-lines",
        OrderError::DuplicateProduct(_) => "duplicate-product",
        OrderError::QuantityOutOfRange { .. } => "quantity-out-of-range",
        OrderError::UnknownProduct(_) => "unknown-product",
        OrderError::EmptyPaymentToken => "empty-payment-token",
        OrderError::PaymentTokenTooLong { .. } => "payment-token-too-long",
        OrderError::TotalOverflow => "total-overflow",
        OrderError::NotPlaced => "order-not-placed",
        OrderError::PaymentCaptured => "payment-captured",
        OrderError::InvalidTransition { .. } => "invalid-transition",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_contract() {
        let id = Uuid::nil();
        let cases = [
            (ApiError::Product(ProductError::NonPositivePrice(0)), 422),
            (ApiError::Product(ProductError::NotRegistered), 404),
            (ApiError::Order(OrderError::UnknownProduct(id)), 422),
            (
                ApiError::Product(ProductError::InsufficientStock {
                    requested: 2,
                    available: 1,
                }),
                422,
            ),
            (
                ApiError::Product(ProductError::NoActiveReservation(id)),
                422,
            ),
            (ApiError::Order(OrderError::NotPlaced), 404),
            (ApiError::Order(OrderError::PaymentCaptured), 422),
            (
                ApiError::Order(OrderError::InvalidTransition {
                    status: domain::order::OrderStatus::Rejected,
                    action: "cancelled",
                }),
                422,
            ),
            (
                ApiError::NotFound {
                    kind: "product",
                    id,
                },
                404,
            ),
            (
                ApiError::VersionMismatch {
                    stream_id: id,
                    expected: 1,
                    actual: 2,
                },
                412,
            ),
            (
                ApiError::RetriesExhausted {
                    stream_id: id,
                    attempts: 5,
                },
                409,
            ),
            (ApiError::IdempotencyKeyInFlight, 409),
            (ApiError::IdempotencyKeyReused, 422),
            (ApiError::database("x", sqlx::Error::PoolTimedOut), 503),
            (ApiError::database("x", sqlx::Error::RowNotFound), 500),
            (ApiError::Internal("bug".into()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
        }
    }

    #[test]
    fn internal_details_are_not_returned() {
        let error = ApiError::database("reading secrets", sqlx::Error::RowNotFound);
        assert!(!error.problem().detail.contains("secrets"));
        let error = ApiError::database("reading secrets", sqlx::Error::PoolTimedOut);
        assert!(!error.problem().detail.contains("secrets"));
    }

    #[test]
    fn unknown_product_problem_names_the_product() {
        let id = Uuid::now_v7();
        let problem = ApiError::Order(OrderError::UnknownProduct(id)).problem();
        assert!(problem.detail.contains(&id.to_string()));
        assert_eq!(problem.type_uri, "urn:orders:problem:unknown-product");
    }
}
