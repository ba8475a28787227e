//! Command-line and environment configuration of the console.

use std::net::SocketAddr;
use std::time::Duration;

use domain::saga::SagaPolicy;
use platform::db::DbConfig;
use platform::telemetry::TelemetryConfig;

/// Configuration of the `console` process.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "console",
    version,
    about = "Web console: orders, timelines, projection lag, outbox backlog, dead letters"
)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "CONSOLE_BIND", default_value = "127.0.0.1:8083")]
    pub bind: SocketAddr,
    /// The database (the owner's URL: the console reads the log, the saga's
    /// tables and the read models; pages use read-only sessions).
    #[command(flatten)]
    pub db: DbConfig,
    /// Token that authorises re-driving dead letters (`Authorization:
    /// Bearer <token>` or the form's token field). Unset or empty: re-drive
    /// is disabled and the console is entirely read-only.
    #[arg(long, env = "CONSOLE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// How often the live figures of `/system` refresh in the browser (ms).
    #[arg(long, env = "CONSOLE_REFRESH_MS", default_value_t = 2000)]
    pub refresh_ms: u64,
    /// The saga's payment deadline (ms) used when re-driving saga dead
    /// letters; the same variable as the saga worker's.
    #[arg(long, env = "SAGA_PAYMENT_DEADLINE_MS", default_value_t = 30_000)]
    pub saga_payment_deadline_ms: u64,
    /// Currency of charges a re-driven saga letter asks for; the same
    /// variable as the saga worker's.
    #[arg(long, env = "SAGA_CURRENCY", default_value = "EUR")]
    pub saga_currency: String,
    /// Logging options.
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
}

impl Config {
    /// The admin token, if re-drive is enabled.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token
            .as_deref()
            .filter(|token| !token.is_empty())
    }

    /// The saga's decision settings, for re-driving its dead letters.
    pub fn saga_policy(&self) -> SagaPolicy {
        SagaPolicy {
            payment_deadline: chrono::Duration::milliseconds(
                i64::try_from(self.saga_payment_deadline_ms).unwrap_or(i64::MAX),
            ),
            currency: self.saga_currency.clone(),
        }
    }

    /// How often `/system` refreshes.
    pub fn refresh(&self) -> Duration {
        Duration::from_millis(self.refresh_ms.max(250))
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
    fn defaults_and_an_empty_token_disable_redrive() {
        let config = Config::try_parse_from(["console"]).expect("defaults");
        assert_eq!(config.bind.port(), 8083);
        assert_eq!(config.saga_policy().currency, "EUR");
        let config = Config::try_parse_from(["console", "--admin-token", ""]).expect("empty token");
        assert_eq!(config.admin_token(), None);
        let config =
            Config::try_parse_from(["console", "--admin-token", "s3cret"]).expect("a token");
        assert_eq!(config.admin_token(), Some("s3cret"));
    }
}
