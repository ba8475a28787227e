//! Command-line / environment configuration of the `command-api` binary.

use std::net::SocketAddr;
use std::time::Duration;

use platform::db::DbConfig;
use platform::telemetry::TelemetryConfig;

use crate::handling::writer::WriterSettings;

/// Default listen address of the command API.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// Configuration of the command API; every option is also an environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "command-api",
    version,
    about = "HTTP API accepting product and order commands into the event log"
)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "COMMAND_API_BIND", default_value = DEFAULT_BIND)]
    pub bind: SocketAddr,

    /// PostgreSQL connection (the event log).
    #[command(flatten)]
    pub db: DbConfig,

    /// Logging.
    #[command(flatten)]
    pub telemetry: TelemetryConfig,

    /// Start without checking that the database schema is fully migrated
    /// (by default a schema behind this binary's migrations is refused; the
    /// `migrate` binary applies them as the owner role).
    #[arg(long, env = "COMMAND_API_SKIP_SCHEMA_CHECK")]
    pub skip_schema_check: bool,

    /// Group-commit writers: each runs one transaction at a time for the
    /// streams that hash to it (keep it below `--db-max-connections`).
    #[arg(long, env = "COMMAND_API_WRITERS", default_value_t = WriterSettings::default().writers)]
    pub writers: usize,

    /// Most commands one writer puts in one transaction.
    #[arg(long, env = "COMMAND_API_MAX_BATCH", default_value_t = WriterSettings::default().max_batch)]
    pub max_batch: usize,

    /// How long an `Idempotency-Key` is remembered, in seconds (the retry
    /// window; default 24 h): the same key after that is a new command.
    /// Expired records are deleted in the background.
    #[arg(long, env = "IDEMPOTENCY_RETENTION_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idempotency_retention_secs: u64,
}

impl Config {
    /// The group-commit settings.
    pub fn writer_settings(&self) -> WriterSettings {
        WriterSettings {
            writers: self.writers.max(1),
            max_batch: self.max_batch.max(1),
            idempotency_retention: Duration::from_secs(self.idempotency_retention_secs),
            ..WriterSettings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let config = Config::try_parse_from(["command-api"]).expect("defaults parse");
        assert_eq!(config.bind.to_string(), DEFAULT_BIND);
        assert!(!config.skip_schema_check);
    }

    #[test]
    fn flags_override_defaults() {
        let config = Config::try_parse_from([
            "command-api",
            "--bind",
            "127.0.0.1:9999",
            "--skip-schema-check",
            "--db-acquire-timeout-ms",
            "500",
        ])
        .expect("flags parse");
        assert_eq!(config.bind.port(), 9999);
        assert_eq!(config.writer_settings(), WriterSettings::default());
        assert!(config.skip_schema_check);
        assert_eq!(config.db.acquire_timeout_ms, 500);
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }
}
