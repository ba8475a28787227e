//! The relay benchmark runs end to end on a small scale and accounts for
//! every event (it asserts nothing about speed).

use std::time::Duration;

use eventstore::relay::RelayConfig;
use outbox_relay::bench::{run, RelayBenchConfig};
use testkit::{TestDatabase, TestKafka};

#[tokio::test]
async fn the_relay_benchmark_measures_every_event_of_each_phase() {
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    let config = RelayBenchConfig {
        events: 700,
        latency_rate: 50,
        latency_duration: Duration::from_secs(1),
        relay: RelayConfig {
            batch_size: 100,
            ..RelayConfig::default()
        },
    };
    let report = run(&db.pool, &kafka.config, &config)
        .await
        .expect("bench runs");
    assert_eq!(report.raw_producer.count, 700);
    // The drain fills whole simulated orders and checks Kafka holds exactly them.
    assert!(report.drain.count >= 700, "{report:?}");
    assert_eq!(report.latency.count, 50);
    assert!(report.latency.p50_ms <= report.latency.p99_ms);
    assert!(report.latency.p99_ms <= report.latency.max_ms);
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(outbox, 0);
}
