//! Where the provider is and how hard to try: flags for any binary that
//! flattens [`ProviderConfig`] into its own configuration.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::breaker::BreakerConfig;

/// Default URL: the simulator that `make run` starts.
pub const DEFAULT_GATEWAY_URL: &str = "http://127.0.0.1:8082";

/// How to reach the payment provider.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ProviderConfig {
    /// Base URL of the payment provider.
    #[arg(long = "payment-gateway-url", env = "PAYMENT_GATEWAY_URL", default_value = DEFAULT_GATEWAY_URL)]
    pub gateway_url: String,
    /// How long to wait for a TCP connection to the provider (ms).
    #[arg(
        long = "payment-connect-timeout-ms",
        env = "PAYMENT_CONNECT_TIMEOUT_MS",
        default_value_t = 500
    )]
    pub connect_timeout_ms: u64,
    /// How long to wait for each whole request, connection included (ms).
    #[arg(
        long = "payment-request-timeout-ms",
        env = "PAYMENT_REQUEST_TIMEOUT_MS",
        default_value_t = 2000
    )]
    pub request_timeout_ms: u64,
    /// Attempts per call (1 = no retries); only timeouts and unavailability are retried.
    #[arg(
        long = "payment-max-attempts",
        env = "PAYMENT_MAX_ATTEMPTS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_attempts: u32,
    /// Ceiling of the first retry's jittered delay; it doubles per retry (ms).
    #[arg(
        long = "payment-backoff-base-ms",
        env = "PAYMENT_BACKOFF_BASE_MS",
        default_value_t = 100
    )]
    pub backoff_base_ms: u64,
    /// Largest ceiling of a retry's jittered delay (ms).
    #[arg(
        long = "payment-backoff-max-ms",
        env = "PAYMENT_BACKOFF_MAX_MS",
        default_value_t = 2000
    )]
    pub backoff_max_ms: u64,
    /// Failed calls (timeouts, unavailability, after their retries) within the
    /// breaker's window that open it, if they are also
    /// `--payment-breaker-failure-percent` of its calls.
    #[arg(
        long = "payment-breaker-failures",
        env = "PAYMENT_BREAKER_FAILURES",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub breaker_failures: u32,
    /// Share of the window's calls that must have failed to open the breaker (%).
    #[arg(
        long = "payment-breaker-failure-percent",
        env = "PAYMENT_BREAKER_FAILURE_PERCENT",
        default_value_t = 80,
        value_parser = clap::value_parser!(u32).range(1..=100)
    )]
    pub breaker_failure_percent: u32,
    /// How far back the breaker counts calls (ms).
    #[arg(
        long = "payment-breaker-window-ms",
        env = "PAYMENT_BREAKER_WINDOW_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(10..)
    )]
    pub breaker_window_ms: u64,
    /// How long the open breaker fails calls fast before letting a probe through (ms).
    #[arg(
        long = "payment-breaker-cooldown-ms",
        env = "PAYMENT_BREAKER_COOLDOWN_MS",
        default_value_t = 5000
    )]
    pub breaker_cooldown_ms: u64,
}

impl ProviderConfig {
    /// The defaults, pointed at `gateway_url`.
    pub fn new(gateway_url: impl Into<String>) -> Self {
        Self {
            gateway_url: gateway_url.into(),
            connect_timeout_ms: 500,
            request_timeout_ms: 2000,
            max_attempts: 3,
            backoff_base_ms: 100,
            backoff_max_ms: 2000,
            breaker_failures: 5,
            breaker_failure_percent: 80,
            breaker_window_ms: 5000,
            breaker_cooldown_ms: 5000,
        }
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The retry delays.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            base: Duration::from_millis(self.backoff_base_ms),
            max: Duration::from_millis(self.backoff_max_ms),
        }
    }

    /// The circuit breaker's settings.
    pub fn breaker(&self) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: self.breaker_failures,
            failure_percent: self.breaker_failure_percent,
            window: Duration::from_millis(self.breaker_window_ms),
            cooldown: Duration::from_millis(self.breaker_cooldown_ms),
        }
    }
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self::new(DEFAULT_GATEWAY_URL)
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        provider: ProviderConfig,
    }

    #[test]
    fn defaults_match_the_flags() {
        let cli = Cli::try_parse_from(["x"]).expect("defaults parse");
        assert_eq!(cli.provider, ProviderConfig::default());
        assert_eq!(cli.provider.gateway_url, "http://127.0.0.1:8082");
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::try_parse_from([
            "x",
            "--payment-gateway-url",
            "http://localhost:1",
            "--payment-connect-timeout-ms",
            "10",
            "--payment-request-timeout-ms",
            "20",
            "--payment-max-attempts",
            "7",
            "--payment-backoff-base-ms",
            "30",
            "--payment-backoff-max-ms",
            "40",
            "--payment-breaker-failures",
            "2",
            "--payment-breaker-failure-percent",
            "60",
            "--payment-breaker-window-ms",
            "70",
            "--payment-breaker-cooldown-ms",
            "50",
        ])
        .expect("flags parse");
        let config = cli.provider;
        assert_eq!(config.gateway_url, "http://localhost:1");
        assert_eq!(config.connect_timeout(), Duration::from_millis(10));
        assert_eq!(config.request_timeout(), Duration::from_millis(20));
        assert_eq!(config.max_attempts, 7);
        assert_eq!(config.backoff().ceiling(2), Duration::from_millis(40));
        assert_eq!(config.breaker().failure_threshold, 2);
        assert_eq!(config.breaker().failure_percent, 60);
        assert_eq!(config.breaker().window, Duration::from_millis(70));
        assert_eq!(config.breaker().cooldown, Duration::from_millis(50));
    }

    #[test]
    fn zero_attempts_or_threshold_are_refused() {
        for flag in [
            "--payment-max-attempts",
            "--payment-breaker-failures",
            "--payment-breaker-failure-percent",
            "--payment-breaker-window-ms",
        ] {
            assert!(Cli::try_parse_from(["x", flag, "0"]).is_err(), "{flag}");
        }
        assert!(Cli::try_parse_from(["x", "--payment-breaker-failure-percent", "101"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
