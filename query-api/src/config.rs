//! Command-line and environment configuration of the query API.

use std::net::SocketAddr;
use std::time::Duration;

use platform::db::DbConfig;
use platform::telemetry::TelemetryConfig;

/// Default URL: the SELECT-only role on the cluster that `make infra-up` starts.
pub const DEFAULT_QUERY_DATABASE_URL: &str =
    "postgres://orders_query:orders_query@127.0.0.1:5432/orders";

/// Configuration of the `query-api` process.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "query-api",
    version,
    about = "HTTP API over the read models (read-only)"
)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "QUERY_API_BIND", default_value = "127.0.0.1:8081")]
    pub bind: SocketAddr,
    /// PostgreSQL URL of the SELECT-only query role (never the owner's URL).
    #[arg(long, env = "QUERY_DATABASE_URL", default_value = DEFAULT_QUERY_DATABASE_URL)]
    pub database_url: String,
    /// Maximum number of pooled database connections.
    #[arg(long, env = "QUERY_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// How long a request waits for a database connection before answering 503 (ms).
    #[arg(long, env = "QUERY_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub db_acquire_timeout_ms: u64,
    /// Longest a `?min_version=N` read waits for the read model to catch up (ms).
    #[arg(long, env = "QUERY_MIN_VERSION_WAIT_MS", default_value_t = 2000)]
    pub min_version_wait_ms: u64,
    /// Logging options.
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
}

impl Config {
    /// The pool settings, in the shape the shared plumbing expects.
    pub fn db_config(&self) -> DbConfig {
        DbConfig {
            url: self.database_url.clone(),
            max_connections: self.db_max_connections,
            acquire_timeout_ms: self.db_acquire_timeout_ms,
        }
    }

    /// The request-handling settings derived from this configuration.
    pub fn settings(&self) -> Settings {
        Settings {
            min_version_wait: Duration::from_millis(self.min_version_wait_ms),
            ..Settings::default()
        }
    }
}

/// How handlers behave, independent of where the process listens or connects.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Longest a `?min_version=N` read waits for the read model to catch up.
    pub min_version_wait: Duration,
    /// How often a waiting read looks at the read model again.
    pub min_version_poll: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            min_version_wait: Duration::from_millis(2000),
            min_version_poll: Duration::from_millis(25),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn command_line_definition_is_valid() {
        Config::command().debug_assert();
    }

    #[test]
    fn flags_override_defaults() {
        let config = Config::try_parse_from([
            "query-api",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            "postgres://q:q@localhost/x",
            "--min-version-wait-ms",
            "150",
        ])
        .expect("valid flags");
        assert_eq!(config.bind.port(), 0);
        assert_eq!(config.db_config().url, "postgres://q:q@localhost/x");
        assert_eq!(
            config.settings().min_version_wait,
            Duration::from_millis(150)
        );
    }
}
