//! The crate's one error type: every failure of a page handler becomes an
//! HTML error page with the right status (the JSON endpoint turns it into
//! problem+json instead), with internal details kept in the logs.

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use platform::http::Problem;

use crate::html::{esc, Page, Section};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// 400: a malformed id, query parameter or form.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: no such order or dead letter.
    #[error("not found: {0}")]
    NotFound(String),
    /// 401: an admin action without a token.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: a wrong token, or admin actions are disabled.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 503 when the database is unreachable, 500 otherwise.
    #[error("{action}")]
    Database {
        /// What was being done, for the logs.
        action: String,
        /// The underlying failure.
        #[source]
        source: sqlx::Error,
    },
}

/// Attaches what was being done to a database error.
pub trait DbContext<T> {
    /// Maps the error to [`ConsoleError::Database`] with `action` as context.
    fn db_context(self, action: impl FnOnce() -> String) -> Result<T, ConsoleError>;
}

impl<T> DbContext<T> for Result<T, sqlx::Error> {
    fn db_context(self, action: impl FnOnce() -> String) -> Result<T, ConsoleError> {
        self.map_err(|source| ConsoleError::Database {
            action: action(),
            source,
        })
    }
}

impl From<QueryRejection> for ConsoleError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<FormRejection> for ConsoleError {
    fn from(rejection: FormRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl ConsoleError {
    /// The problem this error is reported as (and logs what is not reported).
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::BadRequest(detail) => Problem::malformed(detail.clone()),
            Self::NotFound(detail) => Problem::not_found(detail.clone()),
            Self::Unauthorized(detail) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                detail.clone(),
            ),
            Self::Forbidden(detail) => Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                detail.clone(),
            ),
            Self::Database { action, source } => {
                Problem::from_database(action, source, "the database is unavailable; retry later")
            }
        }
    }

    /// The error as an HTML page.
    pub fn to_page(&self) -> Page {
        let problem = self.to_problem();
        let body = format!(
            r#"<p class="error" id="error-detail">{}</p><p><a href="/">Back to the orders</a></p>"#,
            esc(&problem.detail)
        );
        Page::new(
            Section::None,
            format!("{} {}", problem.status, problem.title),
            body,
        )
        .with_status(problem.status_code())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        self.to_page().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_statuses_and_hide_internals() {
        let status = |error: ConsoleError| error.into_response().status();
        assert_eq!(
            status(ConsoleError::BadRequest("x".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(ConsoleError::NotFound("x".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(ConsoleError::Unauthorized("x".into())),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(ConsoleError::Forbidden("x".into())),
            StatusCode::FORBIDDEN
        );
        let unavailable = ConsoleError::Database {
            action: "secret query".into(),
            source: sqlx::Error::PoolTimedOut,
        };
        assert!(!unavailable.to_page().render().contains("secret"));
        assert_eq!(status(unavailable), StatusCode::SERVICE_UNAVAILABLE);
    }
}
