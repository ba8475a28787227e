//! The crate's one error type: every failure of a handler becomes a
//! problem+json response, with internal details kept in the logs.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::response::{IntoResponse, Response};
use platform::http::Problem;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a malformed path, query parameter, cursor, limit or `min_version`.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: the read model has no such entity.
    #[error("not found: {0}")]
    NotFound(String),
    /// 503 when the database is unreachable, 500 otherwise.
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

impl From<sqlx::Error> for ApiError {
    fn from(source: sqlx::Error) -> Self {
        Self::Database {
            action: "querying the read models".to_owned(),
            source,
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        match rejection {
            PathRejection::FailedToDeserializePathParams(_) => {
                Self::BadRequest(rejection.body_text())
            }
            other => Self::Internal(anyhow::anyhow!("path extraction: {}", other.body_text())),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

/// Attaches what was being done to a database error.
pub trait DbContext<T> {
    /// Maps the error to [`ApiError::Database`] with `action` as context.
    fn db_context(self, action: impl FnOnce() -> String) -> Result<T, ApiError>;
}

impl<T> DbContext<T> for Result<T, sqlx::Error> {
    fn db_context(self, action: impl FnOnce() -> String) -> Result<T, ApiError> {
        self.map_err(|source| ApiError::Database {
            action: action(),
            source,
        })
    }
}

impl ApiError {
    /// The problem this error is reported as (and logs what is not reported).
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::BadRequest(detail) => Problem::malformed(detail.clone()),
            Self::NotFound(detail) => Problem::not_found(detail.clone()),
            Self::Database { action, source } => Problem::from_database(
                action,
                source,
                "the read-model database is unavailable; retry later",
            ),
            Self::Internal(error) => {
                tracing::error!(error = ?error, "internal error");
                Problem::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.to_problem().into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn errors_map_to_statuses() {
        let status = |error: ApiError| error.into_response().status();
        assert_eq!(
            status(ApiError::BadRequest("x".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(ApiError::NotFound("x".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(sqlx::Error::PoolTimedOut.into()),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(sqlx::Error::RowNotFound.into()),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status(anyhow::anyhow!("boom").into()),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn internal_details_are_not_returned() {
        let problem = ApiError::from(anyhow::anyhow!("secret table name")).to_problem();
        assert!(!problem.detail.contains("secret"));
    }
}
