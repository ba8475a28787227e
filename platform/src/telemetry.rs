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

/// Installs the global subscriber and the metrics recorder; the filter comes from `RUST_LOG`
/// (default `info`). Safe to call more than once (later calls are ignored).
pub fn init(service: &str, config: &TelemetryConfig) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,rdkafka=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    // Logs go to stderr (stdout stays free for a command's own output),
    // coloured only when a person is watching.
    let ansi = std::io::stderr().is_terminal();
    let result = match config.log_format {
        LogFormat::Plain => registry
            .with(fmt::layer().with_writer(std::io::stderr).with_ansi(ansi))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
    };
    if result.is_ok() {
        tracing::info!(service, "telemetry initialised");
    }
    crate::metrics::install();
}
