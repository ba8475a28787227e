//! Relay failover with real processes: the active relay is killed with
//! SIGKILL while events are being appended; the hot standby takes over and
//! nothing is lost or reordered per stream.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eventstore::{append, ExpectedVersion, Metadata, NewEvent};
use testkit::{eventually, TestDatabase, TestKafka};
use uuid::Uuid;

fn spawn_relay(db: &TestDatabase, kafka: &TestKafka) -> Child {
    Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .env("DATABASE_URL", &db.url)
        .env("KAFKA_BROKERS", &kafka.config.brokers)
        .env("KAFKA_TOPIC_PREFIX", &kafka.config.topic_prefix)
        .env("ADMIN_BIND", "127.0.0.1:0")
        .env("RELAY_POLL_INTERVAL_MS", "50")
        .env("RELAY_STANDBY_RETRY_MS", "200")
        .env("RELAY_BATCH_SIZE", "20")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start outbox-relay")
}

/// Backend pids holding the relay's leader lock in this database.
async fn leader_lock_holders(db: &TestDatabase) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_locks
         WHERE locktype = 'advisory' AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND ((classid::bigint << 32) | objid::bigint) = $1",
    )
    .bind(eventstore::relay::LEADER_LOCK_KEY)
    .fetch_all(&db.pool)
    .await
    .unwrap()
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
    let mut standby = spawn_relay(&db, &kafka);
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
                let stream = streams[written % streams.len()];
                let event = NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: "TestHappened".into(),
                    schema_version: 1,
                    payload: serde_json::json!({ "n": written }),
                };
                let mut tx = pool.begin().await.unwrap();
                append(
                    &mut tx,
                    "orders",
                    stream,
                    ExpectedVersion::Any,
                    &[event],
                    &Metadata::for_command(Uuid::now_v7()),
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
                written += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            written
        })
    };

    tokio::time::sleep(Duration::from_millis(1200)).await;
    active.kill().expect("SIGKILL the active relay");
    active.wait().unwrap();
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

    let mut highest: HashMap<&str, i64> = HashMap::new();
    for record in &records {
        let version = record.value["stream_version"].as_i64().unwrap();
        let seen = highest.entry(record.key.as_str()).or_insert(0);
        assert!(
            version <= *seen + 1,
            "stream {} skipped to version {version} after {seen}",
            record.key
        );
        *seen = (*seen).max(version);
    }
    let total: i64 = highest.values().sum();
    assert_eq!(total, written as i64, "every appended event reached Kafka");
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(outbox, 0);
    standby.kill().ok();
    standby.wait().ok();
}
