//! Exported traces: OpenTelemetry over OTLP/HTTP, off unless
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set.
//!
//! When on, [`crate::telemetry::init`] adds a `tracing-opentelemetry` layer
//! whose spans go through a batch processor (its own thread; tuned by the
//! standard `OTEL_BSP_*` variables) to the OTLP exporter (the standard
//! `OTEL_EXPORTER_OTLP_*` variables: `…_PROTOCOL` `http/protobuf`, the
//! default, or `http/json`; `…_HEADERS`, `…_TIMEOUT`). The service name is
//! `OTEL_SERVICE_NAME`, else the binary's; `OTEL_RESOURCE_ATTRIBUTES` adds
//! attributes; `OTEL_SDK_DISABLED=true` turns export off again. Which spans
//! are exported is filtered apart from the logs: `OTEL_TRACES_FILTER`
//! (`RUST_LOG` syntax, default `info`).
//!
//! When off, nothing is added: [`enabled`] is one atomic load, and the
//! helpers below do nothing ([`set_parent`]) or answer `None`
//! ([`traceparent_of`], [`current_traceparent`]), so hot paths can guard
//! their spans with [`enabled`] and pay nothing.
//!
//! Traces cross processes as W3C `traceparent` strings: in HTTP headers,
//! and in event metadata (see `eventstore::trace`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{ExporterBuildError, Protocol, WithExportConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::{Instrument as _, Subscriber};
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The variable that turns export on: the collector's base URL, e.g.
/// `http://127.0.0.1:4318` (spans go to `/v1/traces` under it).
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The traces-only endpoint (a full URL); also turns export on.
pub const TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `http/protobuf` (the default) or `http/json`.
pub const PROTOCOL_VAR: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// The traces-only protocol, over [`PROTOCOL_VAR`].
pub const TRACES_PROTOCOL_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// Overrides the service name given by the binary.
pub const SERVICE_NAME_VAR: &str = "OTEL_SERVICE_NAME";
/// Which spans are exported (this project's own; see [`span_filter`]).
pub const TRACES_FILTER_VAR: &str = "OTEL_TRACES_FILTER";
/// `true` turns export off whatever the endpoint.
pub const SDK_DISABLED_VAR: &str = "OTEL_SDK_DISABLED";
/// The W3C trace context header (and event metadata field).
pub const TRACEPARENT: &str = "traceparent";

static ENABLED: AtomicBool = AtomicBool::new(false);
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// Why export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// The OTLP exporter refused its configuration (endpoint, protocol…).
    #[error("cannot build the OTLP span exporter: {0}")]
    Exporter(#[from] ExporterBuildError),
}

/// Whether spans are exported (set once by [`crate::telemetry::init`]).
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether the environment asks for export.
fn requested() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let disabled = std::env::var(SDK_DISABLED_VAR)
        .is_ok_and(|value| value.trim().eq_ignore_ascii_case("true"));
    !disabled && (set(ENDPOINT_VAR) || set(TRACES_ENDPOINT_VAR))
}

/// The service name spans are exported under: `OTEL_SERVICE_NAME`, else `service`.
pub fn service_name(service: &str) -> String {
    std::env::var(SERVICE_NAME_VAR)
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| service.to_owned())
}

/// Which spans are exported: `OTEL_TRACES_FILTER` (`RUST_LOG` syntax),
/// default `info`; never the exporter's own HTTP client.
pub fn span_filter() -> EnvFilter {
    let base = std::env::var(TRACES_FILTER_VAR)
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| "info".to_owned());
    EnvFilter::try_new(format!("{base},{QUIET}")).unwrap_or_else(|error| {
        eprintln!("invalid {TRACES_FILTER_VAR} `{base}` ({error}); exporting info spans");
        EnvFilter::new(format!("info,{QUIET}"))
    })
}

/// Targets whose spans are never exported: the export's own transport
/// (which would trace itself) and the drivers' internals.
const QUIET: &str = "sqlx=warn,rdkafka=warn,hyper=off,hyper_util=off,reqwest=off,h2=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,opentelemetry_http=off";

/// The exporting layer when the environment asks for export (`Ok(None)`
/// otherwise). Installs the W3C propagator and keeps the provider for
/// [`shutdown`]. Called once, by [`crate::telemetry::init`].
pub(crate) fn layer<S>(service: &str) -> Result<Option<OpenTelemetryLayer<S, SdkTracer>>, OtelError>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    if !requested() {
        return Ok(None);
    }
    let mut installed = PROVIDER.lock().unwrap_or_else(|e| e.into_inner());
    if installed.is_some() {
        // Exporting already (a second `init` in one process): spans of
        // this subscriber, if it is ever used, go nowhere.
        return Ok(None);
    }
    // Endpoint, protocol, headers and timeout come from the standard
    // variables; without a protocol, the specification's default
    // (the crate's would be JSON, as both encodings are built in).
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    let protocol_set = [PROTOCOL_VAR, TRACES_PROTOCOL_VAR]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()));
    if !protocol_set {
        exporter = exporter.with_protocol(Protocol::HttpBinary);
    }
    let exporter = exporter.build()?;
    let resource = Resource::builder()
        .with_service_name(service_name(service))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer(env!("CARGO_PKG_NAME"));
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    *installed = Some(provider);
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false),
    ))
}

/// Exports the spans still queued and stops exporting (later spans are
/// dropped). Called by [`crate::telemetry::TelemetryGuard`] when a process
/// stops; harmless when export is off or already shut down.
pub fn shutdown() {
    let provider = PROVIDER.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(provider) = provider {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(error) = provider.shutdown() {
            eprintln!("exporting the last spans failed: {error}");
        }
    }
}

/// Makes `traceparent` (a W3C `traceparent` value) the remote parent of
/// `span`, so the span joins that trace. Call it before the span is first
/// entered. Does nothing when export is off, when `traceparent` is `None`
/// or malformed (the span then starts a trace of its own), or when `span`
/// is disabled.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    if !enabled() {
        return;
    }
    let Some(traceparent) = traceparent else {
        return;
    };
    let context = TraceContextPropagator::new().extract(&Carrier(traceparent));
    if context.span().span_context().is_valid() {
        // Fails only for a span already started or disabled: it keeps its parent.
        let _ = span.set_parent(context);
    }
}

/// The W3C `traceparent` of `span` (`00-<trace id>-<span id>-<flags>`), to
/// hand to the next process; `None` when export is off or `span` is
/// disabled.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    let otel_span = context.span();
    let span_context = otel_span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// The `traceparent` of the current span (see [`traceparent_of`]).
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    traceparent_of(&tracing::Span::current())
}

/// Axum middleware: runs the request inside a `request` server span that
/// continues the incoming `traceparent` header when spans are exported
/// (a new trace without one), so a caller's trace reaches this service.
pub async fn traced_requests(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    if enabled() {
        let incoming = request
            .headers()
            .get(TRACEPARENT)
            .and_then(|value| value.to_str().ok());
        set_parent(&span, incoming);
    }
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

/// One `traceparent` value as a propagation carrier.
struct Carrier<'a>(&'a str);

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        key.eq_ignore_ascii_case(TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_do_nothing_when_export_is_off() {
        assert!(!enabled());
        let span = tracing::info_span!("off");
        set_parent(
            &span,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(traceparent_of(&span), None);
        assert_eq!(current_traceparent(), None);
        shutdown();
    }

    #[test]
    fn the_service_name_defaults_to_the_binary() {
        if std::env::var_os(SERVICE_NAME_VAR).is_none() {
            assert_eq!(service_name("projector"), "projector");
        }
    }
}
