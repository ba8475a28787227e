//! Logging, tracing and metrics set-up, the same for every process.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line, with span fields.
    Json,
}

/// Logging options shared by every binary.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryConfig {
    /// Log format.
    #[arg(long = "log-format", env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

/// Keeps span export running; dropping it exports the spans still queued
/// and stops export (see [`crate::otel::shutdown`]). Hold it until the
/// process is done: `let _telemetry = telemetry::init(...)`.
#[derive(Debug)]
#[must_use = "dropping the guard stops span export: hold it until the process ends"]
pub struct TelemetryGuard {
    exporting: bool,
}

impl TelemetryGuard {
    /// Whether this process exports spans.
    pub fn exporting(&self) -> bool {
        self.exporting
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if self.exporting {
            crate::otel::shutdown();
        }
    }
}

/// Installs the global subscriber and the metrics recorder. Logs are
/// filtered by `RUST_LOG` (default `info`). When `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is set, spans are also exported as `service` (see [`crate::otel`]),
/// filtered on their own by `OTEL_TRACES_FILTER` (same syntax, default
/// `info`), so quiet logs do not lose the traces. Safe to call more than
/// once (later calls are ignored).
pub fn init(service: &str, config: &TelemetryConfig) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env()
        // The OpenTelemetry SDK's own warnings (a collector that cannot be
        // reached, spans dropped) are logged; its chatter is not.
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,rdkafka=warn,opentelemetry=warn"));
    let (otel, otel_error) = match crate::otel::layer(service) {
        Ok(layer) => (layer, None),
        Err(error) => (None, Some(error)),
    };
    let mut exporting = otel.is_some();
    let otel = otel.map(|layer| layer.with_filter(crate::otel::span_filter()));
    let registry = tracing_subscriber::registry().with(otel);
    // Logs go to stderr (stdout stays free for a command's own output),
    // coloured only when a person is watching.
    let ansi = std::io::stderr().is_terminal();
    let result = match config.log_format {
        LogFormat::Plain => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_filter(filter),
            )
            .try_init(),
    };
    if result.is_ok() {
        tracing::info!(
            service,
            exporting_spans = exporting,
            "telemetry initialised"
        );
    } else if exporting {
        // Another subscriber was installed first: this one's spans never flow.
        crate::otel::shutdown();
        exporting = false;
    }
    if let Some(error) = otel_error {
        tracing::error!(%error, "spans are not exported");
    }
    crate::metrics::install();
    TelemetryGuard { exporting }
}
