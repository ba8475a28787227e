//! Guarantee 4 at scale: over 100k events appended by concurrent writers,
//! many of which hold their transaction open after taking their positions
//! (so later positions commit first) and some of which roll back, the relay
//! publishes every committed event exactly as the log has it, in per-stream
//! order, and nothing rolled back. A naive high-water-mark reader run over
//! the same workload at the same time must miss events: that proves the
//! workload really produces the sequence-gap situation the relay survives.

mod relay_support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventstore::relay::{Relay, RelayConfig};
use eventstore::{
    append_batch, read_all_after, EventEnvelope, Metadata, NewEvent, StreamAppend, StreamOutcome,
};
use relay_support::assert_per_stream_order;
use serde::Deserialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use testkit::{TestDatabase, TestKafka};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Committed events the writers produce in total (at least).
const COMMITTED_TARGET: usize = 100_000;
/// Concurrent writers; each owns its streams, so they never conflict.
const WRITERS: usize = 12;
/// Streams per writer.
const STREAMS_PER_WRITER: usize = 40;
/// Streams one transaction appends to, and events per stream: 100 per transaction.
const STREAMS_PER_TX: usize = 20;
const EVENTS_PER_STREAM: usize = 5;
/// How long a late committer holds its transaction open after appending.
const HOLD_OPEN: Duration = Duration::from_millis(40);
const WAIT: Duration = Duration::from_secs(120);

/// What one writer's transaction does after appending.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    Commit,
    /// Sleeps with its positions taken, then commits (after later positions).
    CommitLate,
    /// Sleeps, then rolls back.
    RollBack,
}

/// A fixed pattern: a third of the transactions commit late, a tenth roll back.
fn ending(writer: usize, tx: usize) -> Ending {
    match (writer + tx) % 10 {
        0 | 3 | 6 => Ending::CommitLate,
        8 => Ending::RollBack,
        _ => Ending::Commit,
    }
}

/// The event ids the writers committed and rolled back.
#[derive(Default)]
struct Written {
    committed: HashSet<Uuid>,
    rolled_back: HashSet<Uuid>,
}

/// Appends through the real batch append path until this writer's share of
/// `COMMITTED_TARGET` is committed.
async fn write(
    pool: PgPool,
    writer: usize,
    stream_type: &'static str,
    written: Arc<Mutex<Written>>,
) {
    let share = COMMITTED_TARGET.div_ceil(WRITERS);
    let streams: Vec<Uuid> = (0..STREAMS_PER_WRITER).map(|_| Uuid::now_v7()).collect();
    let mut versions = vec![0_i64; STREAMS_PER_WRITER];
    let mut committed = 0;
    for tx_number in 0.. {
        if committed >= share {
            break;
        }
        let chosen: Vec<usize> = (0..STREAMS_PER_TX)
            .map(|n| (tx_number * STREAMS_PER_TX + n) % STREAMS_PER_WRITER)
            .collect();
        let batch: Vec<StreamAppend> = chosen
            .iter()
            .map(|&s| StreamAppend {
                stream_type,
                stream_id: streams[s],
                expected_version: versions[s],
                events: (0..EVENTS_PER_STREAM)
                    .map(|n| {
                        let event = NewEvent {
                            event_id: Uuid::now_v7(),
                            event_type: "TestHappened".to_owned(),
                            schema_version: 1,
                            payload: serde_json::json!({ "writer": writer, "n": n }),
                        };
                        (event, Metadata::for_command(Uuid::now_v7()))
                    })
                    .collect(),
            })
            .collect();
        let ids: Vec<Uuid> = batch
            .iter()
            .flat_map(|s| s.events.iter().map(|(e, _)| e.event_id))
            .collect();
        let mut tx = pool.begin().await.unwrap();
        let outcomes = append_batch(&mut tx, &batch).await.unwrap();
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, StreamOutcome::Appended(_))),
            "a writer's own streams never conflict"
        );
        let ending = ending(writer, tx_number);
        if ending != Ending::Commit {
            tokio::time::sleep(HOLD_OPEN).await;
        }
        if ending == Ending::RollBack {
            tx.rollback().await.unwrap();
            written.lock().unwrap().rolled_back.extend(ids);
            continue;
        }
        tx.commit().await.unwrap();
        for &s in &chosen {
            versions[s] += EVENTS_PER_STREAM as i64;
        }
        committed += ids.len();
        written.lock().unwrap().committed.extend(ids);
    }
}

/// The bug the relay must not have: reads rows above the highest position
/// it has seen, ordered by position. A transaction that took a lower
/// position and commits after a higher one was read is never seen. Runs
/// until `stop`, then drains what is visible; returns the event ids it saw.
async fn naive_high_water_mark_reader(pool: PgPool, stop: CancellationToken) -> HashSet<Uuid> {
    let mut seen = HashSet::new();
    let mut high_water_mark = 0_i64;
    loop {
        let stopping = stop.is_cancelled();
        let rows: Vec<(i64, Uuid)> = sqlx::query_as(
            "SELECT global_position, event_id FROM eventstore.events
             WHERE global_position > $1 ORDER BY global_position LIMIT 5000",
        )
        .bind(high_water_mark)
        .fetch_all(&pool)
        .await
        .unwrap();
        if let Some(&(last, _)) = rows.last() {
            high_water_mark = last;
        }
        let empty = rows.is_empty();
        seen.extend(rows.into_iter().map(|(_, id)| id));
        if empty {
            if stopping {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// The whole log, by event id.
async fn read_log(pool: &PgPool) -> HashMap<Uuid, EventEnvelope> {
    let mut conn = pool.acquire().await.unwrap();
    let mut log = HashMap::new();
    let mut after = 0;
    loop {
        let page = read_all_after(&mut conn, after, 10_000, None)
            .await
            .unwrap();
        let Some(last) = page.last() else {
            return log;
        };
        after = last.global_position;
        log.extend(page.into_iter().map(|e| (e.event_id, e)));
    }
}

/// Waits until the outbox is empty; panics when it stops shrinking for
/// `STUCK` (rows the relay skipped stay there forever).
async fn wait_for_drain(pool: &PgPool) {
    const STUCK: Duration = Duration::from_secs(15);
    let (mut least, mut since) = (i64::MAX, Instant::now());
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.outbox")
            .fetch_one(pool)
            .await
            .unwrap();
        if left == 0 {
            return;
        }
        if left < least {
            (least, since) = (left, Instant::now());
        }
        assert!(
            since.elapsed() < STUCK,
            "the relay left {left} committed events in the outbox for {STUCK:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_every_committed_event_of_100k_with_late_commits_and_rollbacks() {
    let started = Instant::now();
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    let writers_pool = PgPoolOptions::new()
        .max_connections(WRITERS as u32 + 2)
        .connect(&db.url)
        .await
        .unwrap();
    let config = RelayConfig {
        poll_interval_ms: 100,
        standby_retry_ms: 100,
        ..RelayConfig::default()
    };
    let relay = Relay::new(db.pool.clone(), kafka.config.clone(), config).unwrap();
    let stop_relay = CancellationToken::new();
    let relay_task = tokio::spawn({
        let stop = stop_relay.clone();
        async move { relay.run(stop).await }
    });
    let stop_naive = CancellationToken::new();
    let naive = tokio::spawn(naive_high_water_mark_reader(
        writers_pool.clone(),
        stop_naive.clone(),
    ));

    let written = Arc::new(Mutex::new(Written::default()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let stream_type = if w % 2 == 0 { "orders" } else { "inventory" };
            tokio::spawn(write(writers_pool.clone(), w, stream_type, written.clone()))
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let wrote = started.elapsed();
    stop_naive.cancel();
    let naive_seen = naive.await.unwrap();
    let written = std::mem::take(&mut *written.lock().unwrap());
    assert!(written.committed.len() >= COMMITTED_TARGET);

    // The log holds exactly what was committed.
    let log = read_log(&db.pool).await;
    assert_eq!(log.len(), written.committed.len());
    assert!(written.committed.iter().all(|id| log.contains_key(id)));

    // The control: the naive reader skipped late commits (so the workload
    // has the gaps), and saw nothing that is not in the log.
    let missed = log.keys().filter(|id| !naive_seen.contains(id)).count();
    assert!(naive_seen.iter().all(|id| log.contains_key(id)));
    assert!(
        missed >= 1,
        "the naive high-water-mark reader missed nothing: the workload has no late commits"
    );

    // The relay: drain, then every committed event is in Kafka as logged.
    wait_for_drain(&db.pool).await;
    let drained = started.elapsed();
    let probe = kafka.probe(&["orders", "inventory"]);
    let mut records = probe.read(log.len(), WAIT).await;
    records.extend(probe.read_until_quiet(Duration::from_secs(2)).await);

    let mut delivered = HashSet::with_capacity(log.len());
    let mut rolled_back_seen = 0;
    for record in &records {
        let envelope = EventEnvelope::deserialize(&record.value).unwrap();
        if written.rolled_back.contains(&envelope.event_id) {
            rolled_back_seen += 1;
            continue;
        }
        let logged = log
            .get(&envelope.event_id)
            .unwrap_or_else(|| panic!("published event {} is not in the log", envelope.event_id));
        assert_eq!(&envelope, logged, "published differently from the log");
        assert_eq!(record.key, logged.stream_id.to_string());
        assert_eq!(record.topic, kafka.config.topic_for(&logged.stream_type));
        delivered.insert(envelope.event_id);
    }
    assert_eq!(rolled_back_seen, 0, "rolled-back events were published");
    let lost = log.len() - delivered.len();
    assert_eq!(lost, 0, "{lost} committed events never reached Kafka");
    let highest = assert_per_stream_order(&records);
    let logged_streams: HashSet<Uuid> = log.values().map(|e| e.stream_id).collect();
    assert_eq!(highest.len(), logged_streams.len());

    let duplicates = records.len() - delivered.len();
    println!(
        "committed {}, rolled back {}, naive reader missed {missed}, published {} \
         ({duplicates} duplicates), lost {lost}; writers {wrote:?}, drained {drained:?}, total {:?}",
        log.len(),
        written.rolled_back.len(),
        records.len(),
        started.elapsed()
    );
    stop_relay.cancel();
    relay_task.await.unwrap();
}
