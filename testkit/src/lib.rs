//! Test support shared by the integration tests of every crate: a fresh
//! database per test (migrations applied), a unique Kafka topic prefix per
//! test, a Kafka probe that reads what was published, and a TCP proxy a test
//! can cut to simulate a dependency going down.

pub mod database;
pub mod kafka;
pub mod prometheus;
pub mod proxy;

pub use database::TestDatabase;
pub use kafka::{KafkaProbe, TestKafka};
pub use proxy::TcpProxy;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout`
/// with `what` in the message.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Installs a test log subscriber once (respects `RUST_LOG`, default `warn`).
pub fn init_logging() {
    let config = platform::telemetry::TelemetryConfig {
        log_format: platform::telemetry::LogFormat::Plain,
    };
    if std::env::var_os("RUST_LOG").is_none() {
        // Quiet by default; set RUST_LOG to see the services' logs.
        return;
    }
    // Kept for the test binary's life: spans, if exported, flow until it exits.
    std::mem::forget(platform::telemetry::init("test", &config));
}
