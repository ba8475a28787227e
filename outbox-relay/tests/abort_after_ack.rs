//! The chaos run's crash failpoint, with real processes: a relay with
//! `RELAY_FAILPOINT_ABORT_AFTER_ACK=1` aborts after Kafka acknowledged its
//! first batch and before that batch left the outbox; the standby takes over
//! and publishes everything again from the outbox: nothing lost, per-stream
//! order kept, the acknowledged batch delivered twice.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    assert_first_occurrences_in_order, event, leader_lock_holders, metadata, outbox_rows,
    relay_command, RelayProcess,
};
use eventstore::{append, ExpectedVersion};
use testkit::{eventually, TestDatabase, TestKafka};
use uuid::Uuid;

const STREAMS: usize = 4;
const PER_STREAM: usize = 15;
/// The relay's batch size in these tests (`relay_command`).
const FIRST_BATCH: usize = 20;
const WAIT: Duration = Duration::from_secs(30);
/// The signal `std::process::abort` raises (Linux).
const SIGABRT: i32 = 6;

#[tokio::test]
async fn a_relay_aborted_between_ack_and_delete_loses_nothing_and_the_standby_resends_the_batch() {
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    let probe = kafka.probe(&["orders"]);

    let mut failing = RelayProcess::spawn(
        relay_command(&db, &kafka)
            .env("RELAY_FAILPOINT_ABORT_AFTER_ACK", "1")
            .env("RUST_LOG", "error")
            .stderr(Stdio::piped()),
    );
    eventually("the failing relay leads", WAIT, || async {
        (leader_lock_holders(&db).await.len() == 1).then_some(())
    })
    .await;
    let _standby = RelayProcess::spawn(&mut relay_command(&db, &kafka));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        failing.0.try_wait().unwrap().is_none(),
        "aborted with nothing to publish"
    );

    // One transaction, so the leader's first batch is a full one.
    let mut tx = db.pool.begin().await.unwrap();
    for _ in 0..STREAMS {
        let events: Vec<_> = (0..PER_STREAM).map(event).collect();
        append(
            &mut tx,
            "orders",
            Uuid::now_v7(),
            ExpectedVersion::Exact(0),
            &events,
            &metadata(),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let total = STREAMS * PER_STREAM;

    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = failing.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the failpoint never fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.signal(), Some(SIGABRT), "aborted: {status:?}");
    let mut log = String::new();
    failing
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("ERROR") && log.contains("failpoint relay.abort_after_ack fired"),
        "the failpoint logged before aborting: {log}"
    );

    let mut records = probe.read(total, WAIT).await;
    records.extend(probe.read_until_quiet(Duration::from_millis(1500)).await);
    let highest = assert_first_occurrences_in_order(&records);
    assert_eq!(highest.len(), STREAMS);
    assert!(
        highest.values().all(|&v| v == PER_STREAM as i64),
        "every event reached Kafka: {highest:?}"
    );
    // The first batch (the lowest positions) was acknowledged and not
    // removed when the process aborted: the standby published it again.
    let mut copies: HashMap<i64, usize> = HashMap::new();
    for record in &records {
        *copies
            .entry(record.value["global_position"].as_i64().unwrap())
            .or_default() += 1;
    }
    let mut positions: Vec<i64> = copies.keys().copied().collect();
    positions.sort_unstable();
    let first_batch = &positions[..FIRST_BATCH];
    assert!(
        first_batch.iter().all(|p| copies[p] >= 2),
        "the acknowledged first batch was not published again: {copies:?}"
    );
    let duplicates = records.len() - total;
    eventually("the standby drained the outbox", WAIT, || async {
        (outbox_rows(&db).await == 0).then_some(())
    })
    .await;
    println!("{} records, {duplicates} duplicates", records.len());
}
