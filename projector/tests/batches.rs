//! Batches of the live projector: poison isolated inside a batch, a crash
//! between a batch's commit and its offset commit, and batches mixing
//! duplicates, out-of-order deliveries and gaps (guarantee 5).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{Harness, SETTLE};
use domain::payment::PaymentEvent;
use eventstore::{EventEnvelope, NewEvent};
use projector::consumer::project_batch;
use projector::projection::Decoded;
use projector::Verdict;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_event_inside_a_batch_is_rejected_alone() {
    let h = Harness::new().await;
    let (p1, p2) = (Uuid::now_v7(), Uuid::now_v7());
    let mut events = vec![
        h.register(p1, "Lamp", 1000, 5).await,
        h.register(p2, "Bulb", 500, 1).await,
        h.restock(p1, 3).await,
    ];
    events.extend(h.append("inventory", p1, &[discontinued()]).await);
    events.push(h.restock(p1, 100).await);
    events.push(h.restock(p2, 4).await);

    let verdicts = project_batch(h.pool(), &decoded(&events)).await.unwrap();
    let names: Vec<&str> = verdicts.iter().map(name).collect();
    assert_eq!(
        names,
        ["applied", "applied", "applied", "rejected", "rejected", "applied"],
        "the poison and the event behind it in its stream are rejected, nothing else"
    );
    assert!(
        matches!(&verdicts[3], Verdict::Rejected(e) if e.to_string().contains("ProductDiscontinued")),
        "{:?}",
        verdicts[3]
    );
    assert_eq!(stock(h.pool(), p1).await, Some((8, 2)));
    assert_eq!(stock(h.pool(), p2).await, Some((5, 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_in_a_kafka_batch_is_parked_with_its_stream_and_the_rest_applied() {
    let logs = capture_errors();
    let h = Harness::new().await;
    let (p1, p2, order) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let before = vec![
        h.register(p1, "Lamp", 1000, 5).await,
        h.register(p2, "Bulb", 500, 1).await,
        h.restock(p1, 3).await,
    ];
    let poison = h.append("inventory", p1, &[discontinued()]).await;
    let after = vec![
        h.restock(p1, 100).await,
        h.restock(p2, 4).await,
        h.place_order(order, "alice", &[(p2, 1, 500)]).await,
    ];
    // Everything waits in Kafka before the consumer starts, so it comes in batches.
    h.publish(&before).await;
    let (partition, offset) = h.publish(&poison).await[0];
    // Not an event, keyed by p2's stream: p2 waits behind it too.
    h.publish_raw("inventory", &p2.to_string(), b"{not json")
        .await;
    h.publish(&after).await;

    let consumer = h.consumer(&h.group());
    let stats = consumer.stats.clone();
    testkit::eventually("the poison parked and the rest applied", SETTLE, || {
        let (stats, pool) = (stats.clone(), h.pool().clone());
        async move {
            let done = stats.parked() == 4 && common::lagging_streams(&pool).await == 2;
            done.then_some(())
        }
    })
    .await;
    consumer.stop().await;
    // Each parked stream keeps what came before; nothing behind is applied.
    assert_eq!(stock(h.pool(), p1).await, Some((8, 2)));
    assert_eq!(stock(h.pool(), p2).await, Some((1, 1)));
    let placed: i64 = sqlx::query_scalar("SELECT version FROM read.orders WHERE order_id = $1")
        .bind(order)
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert_eq!(placed, 1, "the order's stream goes on");
    // Per stream, in offset order: the dead letter, then what waits behind it.
    for (stream, first) in [(p1, "ProductDiscontinued"), (p2, "undecodable: ")] {
        let letters: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, reason FROM projector.dead_letters WHERE message_key = $1 ORDER BY \"offset\"",
        )
        .bind(stream.to_string())
        .fetch_all(h.pool())
        .await
        .unwrap();
        assert_eq!(letters.len(), 2, "{letters:?}");
        assert!(letters[0].1.contains(first), "{letters:?}");
        assert_eq!(
            letters[1].1,
            format!("blocked by dead letter #{}", letters[0].0)
        );
    }

    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let topic = h.kafka.config.topic_for("inventory");
    let line = logged
        .lines()
        .find(|l| l.contains(&poison[0].event_id.to_string()))
        .unwrap_or_else(|| panic!("the poison is logged at error level: {logged}"));
    assert!(line.contains("message dead-lettered"), "{line}");
    for field in [
        format!("topic=\"{topic}\""),
        format!("partition={partition}"),
        format!("offset={offset}"),
    ] {
        assert!(line.contains(&field), "{field} missing in {line}");
    }
    assert!(
        logged.contains("undecodable: not an event envelope"),
        "{logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_between_the_commit_and_the_offset_commit_changes_nothing_on_redelivery() {
    let h = Harness::new().await;
    let mut events = h.populate(10, 30).await;
    events.extend(h.saga_workload().await.events);
    h.publish(&events).await;
    // The batch's transaction commits; the process dies before storing offsets.
    project_batch(h.pool(), &decoded(&events)).await.unwrap();
    let rows = h.snapshot().await;
    let versions = row_versions(h.pool()).await;

    // A new instance of the group gets every message again.
    let consumer = h.consumer(&h.group());
    let stats = consumer.stats.clone();
    let total = events.len() as u64;
    testkit::eventually("every message redelivered and committed", SETTLE, || {
        let committed = stats.committed();
        async move { (committed == total).then_some(()) }
    })
    .await;
    assert_eq!(consumer.stats.parked(), 0);
    consumer.stop().await;
    assert_eq!(h.snapshot().await, rows);
    assert_eq!(
        row_versions(h.pool()).await,
        versions,
        "no row was rewritten by the redelivery"
    );
    h.replay(&[]).await;
    assert_eq!(h.snapshot().await, rows, "the rows are a fold of the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_of_duplicates_out_of_order_events_and_gaps_equal_a_fold_of_the_log() {
    let h = Harness::new().await;
    let mut events = h.populate(6, 24).await;
    events.extend(h.saga_workload().await.events);
    let delivered = mixed(&events);
    assert!(delivered.len() > events.len());

    // Directly, in batches of 40: gaps are filled from the log, the rest skipped.
    for batch in delivered.chunks(40) {
        let verdicts = project_batch(h.pool(), &decoded(batch)).await.unwrap();
        assert!(verdicts.iter().all(|v| !matches!(v, Verdict::Rejected(_))));
    }
    assert_eq!(common::lagging_streams(h.pool()).await, 0);
    let batched = h.snapshot().await;

    // Through Kafka, from empty read models.
    sqlx::query("TRUNCATE read.products, read.orders, read.user_orders, read.payments")
        .execute(h.pool())
        .await
        .unwrap();
    h.publish(&delivered).await;
    let consumer = h.consumer(&h.group());
    h.wait_projected().await;
    assert_eq!(consumer.stats.parked(), 0);
    consumer.stop().await;
    assert_eq!(h.snapshot().await, batched);

    h.replay(&[]).await;
    assert_eq!(
        h.snapshot().await,
        batched,
        "equal to a fresh fold of the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_payment_stream_for_one_order_is_left_out_not_retried_forever() {
    let h = Harness::new().await;
    let order_id = Uuid::now_v7();
    let requested = PaymentEvent::PaymentRequested {
        order_id,
        amount_cents: 500,
        currency: "EUR".to_owned(),
        token: "tok".to_owned(),
    };
    let captured = PaymentEvent::PaymentCaptured {
        order_id,
        charge_id: "ch_1".to_owned(),
    };
    // Only a corrupted log names one order from two payment streams.
    // Within a batch the lowest payment id is kept.
    let mut ids = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    ids.sort();
    let [first, second, third] = ids;
    let mut events = h
        .append("payments", first, &[NewEvent::from_domain(&requested)])
        .await;
    events.extend(
        h.append("payments", second, &[NewEvent::from_domain(&requested)])
            .await,
    );
    // In one batch, then in a later one.
    project_batch(h.pool(), &decoded(&events)).await.unwrap();
    let later = h
        .append("payments", third, &[NewEvent::from_domain(&requested)])
        .await;
    project_batch(h.pool(), &decoded(&later)).await.unwrap();
    let more = h
        .append("payments", first, &[NewEvent::from_domain(&captured)])
        .await;
    project_batch(h.pool(), &decoded(&more)).await.unwrap();

    let payments = || async {
        sqlx::query_as::<_, (Uuid, String, i64)>(
            "SELECT payment_id, status, version FROM read.payments ORDER BY payment_id",
        )
        .fetch_all(h.pool())
        .await
        .unwrap()
    };
    let live = payments().await;
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].1, "CAPTURED");
    assert_eq!(live[0].2, 2);
    h.replay(&["payments"]).await;
    assert_eq!(payments().await, live);
}

/// `events` shuffled (deterministically), every third one twice, and the
/// second event of the longest product stream left out (a gap).
fn mixed(events: &[EventEnvelope]) -> Vec<EventEnvelope> {
    let mut lengths: BTreeMap<Uuid, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| e.stream_type == "inventory") {
        *lengths.entry(e.stream_id).or_default() += 1;
    }
    let (gapped, _) = lengths.iter().max_by_key(|(_, n)| **n).unwrap();
    let mut out: Vec<EventEnvelope> = events
        .iter()
        .filter(|e| !(e.stream_id == *gapped && e.stream_version == 2))
        .flat_map(|e| {
            let twice = e.global_position % 3 == 0;
            std::iter::repeat_n(e.clone(), if twice { 2 } else { 1 })
        })
        .collect();
    let mut seed = 42_u64;
    for i in (1..out.len()).rev() {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        out.swap(i, (seed >> 33) as usize % (i + 1));
    }
    out
}

fn decoded(events: &[EventEnvelope]) -> Vec<Decoded> {
    events.iter().map(Decoded::from_envelope).collect()
}

fn name(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Applied => "applied",
        Verdict::Duplicate => "duplicate",
        Verdict::Ignored => "ignored",
        Verdict::Rejected(_) => "rejected",
    }
}

fn discontinued() -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "ProductDiscontinued".to_owned(),
        schema_version: 1,
        payload: json!({}),
    }
}

/// A product's (available, version).
async fn stock(pool: &PgPool, product: Uuid) -> Option<(i64, i64)> {
    sqlx::query_as("SELECT available, version FROM read.products WHERE product_id = $1")
        .bind(product)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// Every read row's physical version (`xmin`): it changes when a row is rewritten.
async fn row_versions(pool: &PgPool) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    for (table, key) in common::TABLES {
        let rows: serde_json::Value = sqlx::query_scalar(&format!(
            "SELECT coalesce(json_agg(xmin::text ORDER BY {key}), '[]'::json) FROM read.{table}"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        all.push(rows);
    }
    all
}

/// Captures every error-level log line of this test binary.
fn capture_errors() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::ERROR)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
