//! Fencing a paused leader, with real processes: a healthy leader keeps its
//! lease past the lease length (it renews it); a SIGSTOPped one loses it, the
//! standby terminates its session and drains what is appended meanwhile;
//! resumed with SIGCONT, the old leader steps down instead of acting as
//! leader, and nothing is lost or reordered (first occurrences per stream
//! in version order; duplicates allowed).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{
    admin_gauge, append_one, assert_first_occurrences_in_order, free_port, leader_lock_holders,
    outbox_rows, relay_command, Log, RelayProcess,
};
use testkit::kafka::Record;
use testkit::{eventually, KafkaProbe, TestDatabase, TestKafka};
use uuid::Uuid;

const HEARTBEAT: Duration = Duration::from_millis(200);
const LEASE: Duration = Duration::from_millis(2000);
const STREAMS: usize = 4;
/// Events appended per stream in each phase (before, during, after the pause).
const PER_PHASE: usize = 10;
const WAIT: Duration = Duration::from_secs(30);

/// A relay with a short lease, its log collected, its admin endpoint on `port`.
fn spawn_relay(db: &TestDatabase, kafka: &TestKafka, port: u16) -> (RelayProcess, Log) {
    RelayProcess::spawn_logged(
        relay_command(db, kafka)
            .env("ADMIN_BIND", format!("127.0.0.1:{port}"))
            .env(
                "RELAY_LEADER_HEARTBEAT_MS",
                HEARTBEAT.as_millis().to_string(),
            )
            .env("RELAY_LEADER_LEASE_MS", LEASE.as_millis().to_string())
            .env("RUST_LOG", "warn"),
    )
}

/// The single backend holding the leader lock, once there is exactly one.
async fn lock_holder(db: &TestDatabase, other_than: Option<i32>) -> i32 {
    eventually("one relay holds the leader lock", WAIT, || async {
        match leader_lock_holders(db).await[..] {
            [pid] if Some(pid) != other_than => Some(pid),
            _ => None,
        }
    })
    .await
}

/// Appends one event to every stream, `PER_PHASE` times.
async fn append_phase(db: &TestDatabase, streams: &[Uuid]) {
    for n in 0..PER_PHASE {
        for stream in streams {
            append_one(&db.pool, *stream, n).await;
        }
    }
}

/// Reads until `distinct` different events arrived (duplicates kept).
async fn read_distinct(probe: &KafkaProbe, records: &mut Vec<Record>, distinct: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen: HashSet<&str> = records
            .iter()
            .map(|r| r.headers["event_id"].as_str())
            .collect();
        if seen.len() >= distinct {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {distinct} events reached Kafka",
            seen.len()
        );
        records.extend(probe.read(1, Duration::from_millis(500)).await);
    }
}

#[tokio::test]
async fn a_paused_leader_is_fenced_after_its_lease_and_steps_down_when_resumed() {
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    let probe = kafka.probe(&["orders"]);
    let streams: Vec<Uuid> = (0..STREAMS).map(|_| Uuid::now_v7()).collect();
    let mut records = Vec::new();

    let (old_port, standby_port) = (free_port(), free_port());
    let (old, old_log) = spawn_relay(&db, &kafka, old_port);
    let old_backend = lock_holder(&db, None).await;
    let (_standby, standby_log) = spawn_relay(&db, &kafka, standby_port);
    // A healthy leader renews its lease: still the leader after longer than it.
    tokio::time::sleep(LEASE + LEASE / 2).await;
    assert_eq!(
        leader_lock_holders(&db).await,
        [old_backend],
        "a healthy leader was fenced"
    );
    append_phase(&db, &streams).await;
    read_distinct(&probe, &mut records, STREAMS * PER_PHASE).await;

    // Paused past its lease: the standby fences it and publishes new events.
    old.signal("STOP");
    let paused = Instant::now();
    append_phase(&db, &streams).await;
    let new_backend = lock_holder(&db, Some(old_backend)).await;
    let took_over = paused.elapsed();
    assert!(
        took_over >= LEASE,
        "taken over before the lease ran out ({took_over:?})"
    );
    read_distinct(&probe, &mut records, 2 * STREAMS * PER_PHASE).await;
    assert_eq!(standby_log.count("missed its lease"), 1);

    // Resumed: the old leader finds its session gone and steps down.
    old.signal("CONT");
    append_phase(&db, &streams).await;
    eventually("the resumed relay stepped down", WAIT, || async {
        (old_log.count("stepped down: no longer the active relay") >= 1).then_some(())
    })
    .await;
    read_distinct(&probe, &mut records, 3 * STREAMS * PER_PHASE).await;
    records.extend(probe.read_until_quiet(Duration::from_millis(1500)).await);
    assert_eq!(
        leader_lock_holders(&db).await,
        [new_backend],
        "the old leader took the lock back"
    );
    assert_eq!(
        admin_gauge(old_port, "relay_is_leader"),
        Some(0.0),
        "the resumed relay still reports itself as leader"
    );
    assert_eq!(admin_gauge(standby_port, "relay_is_leader"), Some(1.0));

    let highest = assert_first_occurrences_in_order(&records);
    assert_eq!(highest.len(), STREAMS);
    assert!(
        highest.values().all(|&v| v == 3 * PER_PHASE as i64),
        "every event reached Kafka: {highest:?}"
    );
    assert_eq!(outbox_rows(&db).await, 0);
    println!(
        "taken over {took_over:?} after the pause; {} records for {} events",
        records.len(),
        3 * STREAMS * PER_PHASE
    );
}
