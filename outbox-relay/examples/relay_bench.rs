//! Measures the relay alone and prints the figures with the raw producer
//! baseline of the same run (and the report as JSON on the last line):
//!
//! ```sh
//! cargo run --release -p outbox-relay --example relay_bench -- --events 100000
//! ```
//!
//! Uses a scratch database (created on `DATABASE_URL`'s server, dropped at
//! the end) and fresh topics on `KAFKA_BROKERS`.

use std::time::Duration;

use clap::Parser;
use eventstore::relay::RelayConfig;
use outbox_relay::bench::{run, RelayBenchConfig};
use platform::kafka::KafkaConfig;
use sqlx::Executor;

/// Relay benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Messages of the raw baseline and events of the drain.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Events per second of the latency phase.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[command(flatten)]
    relay: RelayConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = testkit::TestDatabase::create().await;
    let kafka = KafkaConfig::new(
        testkit::kafka::brokers(),
        format!("relay-bench-{}.", uuid::Uuid::new_v4().simple()),
    );
    let config = RelayBenchConfig {
        events: args.events,
        latency_rate: args.rate,
        latency_duration: Duration::from_secs(args.seconds),
        relay: args.relay,
    };
    let report = run(&db.pool, &kafka, &config).await;
    db.pool.close().await;
    let admin = sqlx::PgPool::connect(&testkit::database::admin_url()).await?;
    admin
        .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name).as_str())
        .await?;
    let report = report?;
    print!("{report}");
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
