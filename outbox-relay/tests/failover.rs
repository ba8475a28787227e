//! Relay failover with real processes: the active relay is killed with
//! SIGKILL while events are being appended; the hot standby takes over and
//! nothing is lost or reordered per stream.

mod common;

use std::time::{Duration, Instant};

use common::{
    append_one, assert_first_occurrences_in_order, leader_lock_holders, outbox_rows, RelayProcess,
};
use testkit::{eventually, TestDatabase, TestKafka};
use uuid::Uuid;

fn spawn_relay(db: &TestDatabase, kafka: &TestKafka) -> RelayProcess {
    RelayProcess::spawn(&mut common::relay_command(db, kafka))
}

#[tokio::test]
async fn killing_the_active_relay_loses_and_reorders_nothing() {
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    let probe = kafka.probe(&["orders"]);

    let mut active = spawn_relay(&db, &kafka);
    eventually("first relay leads", Duration::from_secs(30), || async {
        (leader_lock_holders(&db).await.len() == 1).then_some(())
    })
    .await;
    let _standby = spawn_relay(&db, &kafka);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        leader_lock_holders(&db).await.len(),
        1,
        "exactly one leader"
    );

    let streams: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let writer = {
        let pool = db.pool.clone();
        let streams = streams.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut written = 0;
            while started.elapsed() < Duration::from_secs(3) {
                append_one(&pool, streams[written % streams.len()], written).await;
                written += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            written
        })
    };

    tokio::time::sleep(Duration::from_millis(1200)).await;
    active.0.kill().expect("SIGKILL the active relay");
    active.0.wait().unwrap();
    let written = writer.await.unwrap();
    assert!(written > 100, "the writer kept appending ({written})");

    eventually("standby took over", Duration::from_secs(30), || async {
        (leader_lock_holders(&db).await.len() == 1).then_some(())
    })
    .await;
    let records = probe.read(written, Duration::from_secs(60)).await;
    // At-least-once: a batch in flight when the leader died may come twice.
    let mut records = records;
    records.extend(probe.read_until_quiet(Duration::from_millis(1500)).await);

    let highest = assert_first_occurrences_in_order(&records);
    let total: i64 = highest.values().sum();
    assert_eq!(total, written as i64, "every appended event reached Kafka");
    assert_eq!(outbox_rows(&db).await, 0);
}
