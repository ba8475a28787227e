//! Command-line / environment configuration of the `payment-gateway` binary.

use std::net::SocketAddr;
use std::time::Duration;

use platform::db::DbConfig;
use platform::telemetry::TelemetryConfig;

use crate::behaviour::Behaviour;

/// Default listen address of the simulator.
pub const DEFAULT_BIND: &str = "127.0.0.1:8082";

/// Configuration of the simulator; every option is also an environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "payment-gateway",
    version,
    about = "Payment provider simulator: charges, refunds and test-card behaviours over a Postgres ledger"
)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "PAYMENT_GATEWAY_BIND", default_value = DEFAULT_BIND)]
    pub bind: SocketAddr,

    /// PostgreSQL connection (the ledger lives in schema `gateway`).
    #[command(flatten)]
    pub db: DbConfig,

    /// Logging.
    #[command(flatten)]
    pub telemetry: TelemetryConfig,

    /// Start without checking that the database schema is fully migrated
    /// (by default a schema behind this binary's migrations is refused; the
    /// `migrate` binary applies them as the owner role).
    #[arg(long, env = "PAYMENT_GATEWAY_SKIP_SCHEMA_CHECK")]
    pub skip_schema_check: bool,

    /// Extra latency added to every response of the charge routes (not the health probes), in ms.
    #[arg(long, env = "PAYMENT_GATEWAY_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,

    /// Probability (0.0 to 1.0) that a charge or refund is answered 503 before anything is done.
    #[arg(
        long,
        env = "PAYMENT_GATEWAY_FAILURE_RATE",
        default_value_t = 0.0,
        value_parser = parse_probability
    )]
    pub failure_rate: f64,

    /// How long `tok_timeout*` answers and `tok_hang*` requests are held (ms).
    #[arg(
        long,
        env = "PAYMENT_GATEWAY_SLOW_RESPONSE_MS",
        default_value_t = 10_000
    )]
    pub slow_response_ms: u64,
}

impl Config {
    /// The simulated behaviour these flags ask for.
    pub fn behaviour(&self) -> Behaviour {
        Behaviour {
            latency: Duration::from_millis(self.latency_ms),
            failure_rate: self.failure_rate,
            slow_response: Duration::from_millis(self.slow_response_ms),
        }
    }
}

/// Parses a probability in `0.0..=1.0`.
fn parse_probability(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not between 0.0 and 1.0"))
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let config = Config::try_parse_from(["payment-gateway"]).expect("defaults parse");
        assert_eq!(config.bind.to_string(), DEFAULT_BIND);
        assert!(!config.skip_schema_check);
        let behaviour = config.behaviour();
        assert_eq!(behaviour.latency, Duration::ZERO);
        assert!(behaviour.failure_rate.abs() < f64::EPSILON);
        assert_eq!(behaviour.slow_response, Duration::from_secs(10));
    }

    #[test]
    fn flags_override_defaults() {
        let config = Config::try_parse_from([
            "payment-gateway",
            "--bind",
            "127.0.0.1:0",
            "--latency-ms",
            "25",
            "--failure-rate",
            "0.25",
            "--slow-response-ms",
            "300",
            "--skip-schema-check",
        ])
        .expect("flags parse");
        assert_eq!(config.bind.port(), 0);
        assert!(config.skip_schema_check);
        let behaviour = config.behaviour();
        assert_eq!(behaviour.latency, Duration::from_millis(25));
        assert!((behaviour.failure_rate - 0.25).abs() < f64::EPSILON);
        assert_eq!(behaviour.slow_response, Duration::from_millis(300));
    }

    #[test]
    fn failure_rate_must_be_a_probability() {
        for bad in ["1.5", "-0.1", "often"] {
            assert!(
                Config::try_parse_from(["payment-gateway", "--failure-rate", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Config::command().debug_assert();
    }
}
