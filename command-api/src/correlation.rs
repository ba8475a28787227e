//! Per-request command ids (`X-Correlation-Id`) and W3C `traceparent` handling.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use uuid::Uuid;

/// Response header carrying the request's command id.
pub const CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

/// The id (UUIDv7) given to one request; its events carry it as both
/// `correlation_id` and `causation_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandId(pub Uuid);

/// Middleware: assigns a fresh [`CommandId`] to the request, runs the rest of
/// the stack inside a span carrying it, and echoes it as `X-Correlation-Id`.
pub async fn assign_command_id(mut request: Request, next: Next) -> Response {
    let id = Uuid::now_v7();
    request.extensions_mut().insert(CommandId(id));
    let span = tracing::info_span!("command", correlation_id = %id);
    let mut response = next.run(request).instrument(span).await;
    let value = HeaderValue::try_from(id.to_string()).expect("a uuid is a valid header value");
    response.headers_mut().insert(CORRELATION_HEADER, value);
    response
}
