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

/// The W3C `traceparent` a request's events carry in their metadata, so
/// that every process handling them joins the request's trace: the
/// request span's own when spans are exported (a child of a valid incoming
/// `traceparent`, or the root of a new trace); otherwise the valid incoming
/// one, or a fresh one (a malformed header is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTrace(pub String);

/// Middleware: assigns a fresh [`CommandId`] and [`CommandTrace`] to the
/// request, runs the rest of the stack inside a server span carrying them
/// (continuing the incoming `traceparent`), and echoes the id as
/// `X-Correlation-Id`.
pub async fn assign_command_id(mut request: Request, next: Next) -> Response {
    let id = Uuid::now_v7();
    let incoming = request
        .headers()
        .get(platform::otel::TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .filter(|value| eventstore::trace::is_valid_traceparent(value));
    let span = tracing::info_span!(
        "command",
        otel.kind = "server",
        correlation_id = %id,
        http.request.method = %request.method(),
        url.path = request.uri().path(),
        trace_id = tracing::field::Empty,
    );
    platform::otel::set_parent(&span, incoming);
    let traceparent = platform::otel::traceparent_of(&span)
        .or_else(|| incoming.map(str::to_owned))
        .unwrap_or_else(eventstore::trace::new_traceparent);
    if let Some(trace_id) = eventstore::trace::trace_id(Some(&traceparent)) {
        span.record("trace_id", trace_id);
    }
    request.extensions_mut().insert(CommandId(id));
    request.extensions_mut().insert(CommandTrace(traceparent));
    let mut response = next.run(request).instrument(span).await;
    let value = HeaderValue::try_from(id.to_string()).expect("a uuid is a valid header value");
    response.headers_mut().insert(CORRELATION_HEADER, value);
    response
}
