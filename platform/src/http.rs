//! HTTP building blocks shared by the command and query APIs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

/// Largest request body either API accepts; larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The media type of error bodies (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem response: every error of every API has this shape.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this case, for a human.
    pub detail: String,
    /// Extension members (RFC 9457 section 3.2), serialized next to the
    /// standard ones, e.g. a payment provider's `decline_code`.
    #[serde(flatten)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    /// A problem of kind `slug` with the given status, title and detail.
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("urn:orders:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            extensions: serde_json::Map::new(),
        }
    }

    /// Adds the extension member `key` (standard members cannot be replaced).
    pub fn with_extension(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        if !matches!(key, "type" | "title" | "status" | "detail") {
            self.extensions.insert(key.to_owned(), value.into());
        }
        self
    }

    /// 400: the body is not valid JSON of the expected shape.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "Malformed request",
            detail,
        )
    }

    /// 404: the addressed entity does not exist.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 422: the request is well-formed but breaks a rule.
    pub fn unprocessable(slug: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            slug,
            "Request refused",
            detail,
        )
    }

    /// 503: a dependency is down; nothing was written.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency-unavailable",
            "Service unavailable",
            detail,
        )
    }

    /// 500: a bug or an unexpected failure; details are logged, not returned.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-error",
            "Internal error",
            "an unexpected error occurred; it has been logged",
        )
    }

    /// The problem for a failed database call: 503 when the database cannot
    /// be reached (`unavailable` says what that means for the caller), else
    /// 500. Logs the details, which are never returned.
    pub fn from_database(action: &str, error: &sqlx::Error, unavailable: &str) -> Self {
        if crate::db::is_unavailable(error) {
            tracing::warn!(%action, %error, "database unavailable");
            Self::unavailable(unavailable)
        } else {
            tracing::error!(%action, ?error, "database error");
            Self::internal()
        }
    }

    /// The status as a `StatusCode`.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let mut response = (status, Json(self)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

/// `Json<T>` whose rejections are problem+json: 400 for bad syntax or shape,
/// 413 for a body over the limit, 415 for a missing JSON content type.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection_problem(&rejection)),
        }
    }
}

fn json_rejection_problem(rejection: &JsonRejection) -> Problem {
    match rejection {
        JsonRejection::JsonSyntaxError(_) | JsonRejection::JsonDataError(_) => {
            Problem::malformed(rejection.body_text())
        }
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "expected a body with `Content-Type: application/json`",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!("the request body exceeds {MAX_BODY_BYTES} bytes"),
        ),
        other => Problem::malformed(other.body_text()),
    }
}

/// 400 when a JSON body holds a string (or member name) with U+0000,
/// which PostgreSQL can store neither in `text` nor in `jsonb`: refused
/// up front rather than failing the write with a 500. Cheap when there is
/// none (a byte scan for the escape; JSON cannot carry a raw NUL).
pub fn refuse_nul_characters(raw: &[u8]) -> Result<(), Problem> {
    const ESCAPE: &[u8] = br"\u0000";
    if !raw.windows(ESCAPE.len()).any(|w| w == ESCAPE) {
        return Ok(());
    }
    // The escape may itself be escaped text (`"\\u0000"`): decide on the
    // parsed strings.
    fn has_nul(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(has_nul),
            serde_json::Value::Object(members) => members
                .iter()
                .any(|(key, value)| key.contains('\0') || has_nul(value)),
            _ => false,
        }
    }
    match serde_json::from_slice::<serde_json::Value>(raw) {
        Ok(value) if has_nul(&value) => Err(Problem::malformed(
            "strings must not contain the NUL character (U+0000)",
        )),
        _ => Ok(()),
    }
}

/// A readiness check: `Ok` when every dependency the process needs answers.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A readiness check that pings PostgreSQL through `pool`.
pub fn database_readiness(pool: sqlx::PgPool) -> ReadinessCheck {
    Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(|error| format!("database: {error}"))
        })
    })
}

/// `GET /health/live` (the process runs) and `GET /health/ready` (its
/// dependencies answer; 503 problem+json otherwise).
pub fn health_router(readiness: ReadinessCheck) -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(serde_json::json!({"status": "live"})) }),
        )
        .route(
            "/health/ready",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    match readiness().await {
                        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
                        Err(detail) => Problem::unavailable(detail).into_response(),
                    }
                }
            }),
        )
}

/// Adds what every API wants: `GET /metrics`, request metrics, the body
/// limit, request tracing, panics turned into 500 problems, and
/// problem+json for unknown routes (404) and wrong methods (405, with
/// `Allow`).
pub fn with_common_layers(router: Router) -> Router {
    router
        .merge(crate::metrics::router())
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not accept this method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(crate::metrics::track_http))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_| {
            Problem::internal().into_response()
        }))
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains
/// in-flight requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_character_in_any_string_is_refused_and_escaped_text_is_not() {
        for bad in [
            r#"{"name":"a\u0000b"}"#,
            r#"{"lines":[{"note":"\u0000"}]}"#,
            r#"{"a\u0000":1}"#,
        ] {
            let problem = refuse_nul_characters(bad.as_bytes()).unwrap_err();
            assert_eq!(problem.status, 400, "{bad}");
        }
        for good in [
            r#"{"name":"plain"}"#,
            r#"{"name":"backslash then \\u0000 as text"}"#,
            "not json at all \\u0000",
        ] {
            assert!(refuse_nul_characters(good.as_bytes()).is_ok(), "{good}");
        }
    }
}
