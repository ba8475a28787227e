//! Replay rebuilds read models from the log into shadow tables and swaps them
//! in atomically, while queries and the live projector carry on (guarantee 6).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{replay_options, Harness, SETTLE};
use eventstore::NewEvent;
use projector::replay::REPLAY_LOCK_KEY;
use projector::ReplayError;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_rebuilds_identical_read_models() {
    let h = Harness::new().await;
    let relay = h.relay();
    let consumer = h.consumer(&h.group());
    let mut events = h.populate(30, 60).await;
    events.extend(h.saga_workload().await.events);
    h.wait_projected().await;
    let live = h.snapshot().await;
    assert_eq!(live["payments"].as_array().map(Vec::len), Some(5));
    consumer.stop().await;
    relay.stop().await;

    let summary = h.replay(&[]).await;
    eprintln!("{summary}");
    assert_eq!(h.snapshot().await, live);
    assert_eq!(summary.events, events.len() as u64);
    assert_eq!(
        summary.rows,
        [
            ("read.products".to_owned(), 32),
            ("read.orders".to_owned(), 66),
            ("read.user_orders".to_owned(), 66),
            ("read.payments".to_owned(), 5)
        ]
    );
    assert!(!shadow_exists(h.pool()).await);
    // The query role still reads the swapped payments table.
    let query_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&h.db.query_url)
        .await
        .expect("connect as the query role");
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM read.payments")
        .fetch_one(&query_pool)
        .await
        .expect("the query role reads read.payments after a swap");
    assert_eq!(payments, 5);
    // The swapped tables keep their index names.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'read' ORDER BY 1",
    )
    .fetch_all(h.pool())
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "orders_pkey",
            "payments_order_id_key",
            "payments_pkey",
            "products_pkey",
            "user_orders_by_user",
            "user_orders_pkey"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_of_one_projection_swaps_only_its_tables() {
    let h = Harness::new().await;
    h.populate(10, 20).await;
    h.replay(&[]).await;
    let before = h.snapshot().await;
    let oids = table_oids(h.pool()).await;

    let summary = h.replay(&["products"]).await;
    assert_eq!(summary.projections, ["products"]);
    assert_eq!(summary.rows, [("read.products".to_owned(), 10)]);
    let after = table_oids(h.pool()).await;
    assert_ne!(after[0], oids[0], "products must be swapped");
    assert_eq!(
        after[1..],
        oids[1..],
        "orders, user_orders and payments must be untouched"
    );
    assert_eq!(h.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_while_the_projector_runs_and_events_keep_coming_converges() {
    let h = Harness::new().await;
    let relay = h.relay();
    let consumer = h.consumer(&h.group());
    let products = h.populate(20, 20).await;
    let product_ids: Vec<Uuid> = products
        .iter()
        .filter(|e| e.stream_type == "inventory")
        .map(|e| e.stream_id)
        .collect();

    // A writer keeps appending while replays run.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (h_pool, writing) = (h.pool().clone(), writing.clone());
        let ids = product_ids.clone();
        tokio::spawn(async move {
            let mut i = 0_usize;
            while writing.load(Ordering::SeqCst) {
                let product = ids[i % ids.len()];
                append_restock(&h_pool, product, 1 + (i % 4) as i64).await;
                if i.is_multiple_of(3) {
                    append_order(&h_pool, Uuid::now_v7(), product).await;
                }
                if i.is_multiple_of(10) {
                    append_register(&h_pool, Uuid::now_v7()).await;
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            i
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.replay(&[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.replay(&["orders"]).await;
    h.replay(&["products", "user_orders"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    writing.store(false, Ordering::SeqCst);
    let writes = writer.await.unwrap();
    assert!(writes > 50, "the writer barely ran ({writes} writes)");

    h.wait_projected().await;
    let live = h.snapshot().await;
    assert_eq!(consumer.stats.parked(), 0);
    assert_eq!(
        consumer.stats.retries(),
        0,
        "the swaps must not fail live transactions"
    );
    consumer.stop().await;
    relay.stop().await;
    h.replay(&[]).await;
    assert_eq!(h.snapshot().await, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_never_see_a_half_built_model_during_replay() {
    let h = Harness::new().await;
    h.populate(400, 400).await;
    h.replay(&[]).await;
    let query_pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&h.db.query_url)
        .await
        .expect("connect as the query role");

    let running = Arc::new(AtomicBool::new(true));
    let reader = {
        let (pool, running) = (query_pool.clone(), running.clone());
        tokio::spawn(async move {
            let mut counts = Vec::new();
            while running.load(Ordering::SeqCst) {
                let count: Result<i64, _> =
                    sqlx::query_scalar("SELECT count(*) FROM read.products")
                        .fetch_one(&pool)
                        .await;
                counts.push(count.map_err(|e| e.to_string()));
            }
            counts
        })
    };
    let mut options = replay_options(&[]);
    options.batch_size = 50;
    projector::replay(h.pool(), &options).await.unwrap();
    projector::replay(h.pool(), &replay_options(&["products"]))
        .await
        .unwrap();
    running.store(false, Ordering::SeqCst);
    let counts = reader.await.unwrap();
    assert!(counts.len() > 10, "the reader barely ran");
    let unexpected: Vec<_> = counts.iter().filter(|c| **c != Ok(400)).collect();
    assert!(unexpected.is_empty(), "reader saw {unexpected:?}");

    // The query role can still read every swapped table.
    for table in ["products", "orders", "user_orders"] {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM read.{table}"))
            .fetch_one(&query_pool)
            .await
            .unwrap_or_else(|e| panic!("query role cannot read read.{table}: {e}"));
        assert_eq!(rows, 400);
    }
    let write = sqlx::query("DELETE FROM read.products")
        .execute(&query_pool)
        .await;
    assert!(write.is_err(), "the query role must not write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_concurrent_replay_fails_cleanly() {
    let h = Harness::new().await;
    h.populate(200, 400).await;

    // Deterministic: the lock is held by someone else.
    let mut holder = h.pool().acquire().await.unwrap();
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REPLAY_LOCK_KEY)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    assert!(taken);
    let refused = projector::replay(h.pool(), &replay_options(&[])).await;
    assert!(
        matches!(refused, Err(ReplayError::AlreadyRunning)),
        "{refused:?}"
    );
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(REPLAY_LOCK_KEY)
        .execute(&mut *holder)
        .await
        .unwrap();
    drop(holder);

    // Real concurrency: a second replay while the first one runs. A reader
    // holding a lock on a live table keeps the first one waiting in its swap.
    let mut reader = h.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE read.orders IN ACCESS SHARE MODE")
        .execute(&mut *reader)
        .await
        .unwrap();
    let first = {
        let pool = h.pool().clone();
        tokio::spawn(async move { projector::replay(&pool, &replay_options(&[])).await })
    };
    let pool = h.pool().clone();
    testkit::eventually("the first replay to wait for its swap", SETTLE, || {
        let pool = pool.clone();
        async move { (replay_lock_held(&pool).await && swap_waiting(&pool).await).then_some(()) }
    })
    .await;
    let second = projector::replay(h.pool(), &replay_options(&[])).await;
    reader.commit().await.unwrap();
    let first = first.await.unwrap();
    let second_error = second.expect_err("the second replay must fail");
    assert!(matches!(second_error, ReplayError::AlreadyRunning));
    assert!(second_error.to_string().contains("already running"));
    let summary = first.expect("the first replay is not disturbed");
    eprintln!("{summary}");
    assert_eq!(summary.rows[0], ("read.products".to_owned(), 200));
    assert!(!shadow_exists(h.pool()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_replay_leaves_live_models_and_drops_the_shadow() {
    let h = Harness::new().await;
    let events = h.populate(5, 5).await;
    h.replay(&[]).await;
    let before = h.snapshot().await;
    let oids = table_oids(h.pool()).await;

    h.append(
        "inventory",
        events[0].stream_id,
        &[NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "ProductDiscontinued".to_owned(),
            schema_version: 1,
            payload: json!({}),
        }],
    )
    .await;
    let error = projector::replay(h.pool(), &replay_options(&[]))
        .await
        .expect_err("an unknown event type fails the replay");
    assert!(
        error.to_string().contains("ProductDiscontinued"),
        "the error names the event type: {error}"
    );
    assert!(
        error.to_string().contains("replay does not skip events"),
        "the error says why it fails: {error}"
    );
    assert!(!shadow_exists(h.pool()).await);
    assert_eq!(table_oids(h.pool()).await, oids);
    assert_eq!(h.snapshot().await, before);
    // The lock was released: a replay of the unaffected projections works.
    h.replay(&["orders", "user_orders"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_replay_command_reports_a_summary_and_fails_clearly() {
    let h = Harness::new().await;
    h.populate(20, 20).await;

    let help = common::run_projector(&["replay", "--help"], &h.db.url).await;
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Safe while the system runs"), "{help}");
    assert!(help.contains("--projection"), "{help}");

    let ok = common::run_projector(&["replay", "--batch-size", "7"], &h.db.url).await;
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("80 events applied"), "{stdout}");
    assert!(stdout.contains("read.products=20"), "{stdout}");

    let payments = common::run_projector(&["replay", "--projection", "payments"], &h.db.url).await;
    let stdout = String::from_utf8_lossy(&payments.stdout);
    assert!(payments.status.success(), "{stdout}");
    assert!(stdout.contains("read.payments=0"), "{stdout}");

    let mut holder = h.pool().acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(REPLAY_LOCK_KEY)
        .execute(&mut *holder)
        .await
        .unwrap();
    let busy = common::run_projector(&["replay"], &h.db.url).await;
    assert!(!busy.status.success());
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(
        stderr.contains("another replay is already running"),
        "{stderr}"
    );

    let unknown = common::run_projector(&["replay", "--projection", "nope"], &h.db.url).await;
    assert!(!unknown.status.success());
}

async fn shadow_exists(pool: &PgPool) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'read_replay')")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn table_oids(pool: &PgPool) -> Vec<u32> {
    let mut oids = Vec::new();
    for table in ["products", "orders", "user_orders", "payments"] {
        let oid: sqlx::postgres::types::Oid =
            sqlx::query_scalar(&format!("SELECT 'read.{table}'::regclass::oid"))
                .fetch_one(pool)
                .await
                .unwrap();
        oids.push(oid.0);
    }
    oids
}

/// Whether some session waits for a lock on a live read table.
async fn swap_waiting(pool: &PgPool) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                        WHERE NOT l.granted AND c.relnamespace = 'read'::regnamespace
                          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn replay_lock_held(pool: &PgPool) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted
                        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                        AND ((classid::bigint << 32) | objid::bigint) = $1)",
    )
    .bind(REPLAY_LOCK_KEY)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn append(pool: &PgPool, stream_type: &str, id: Uuid, event: NewEvent) {
    let mut tx = pool.begin().await.unwrap();
    eventstore::append(
        &mut tx,
        stream_type,
        id,
        eventstore::ExpectedVersion::Any,
        &[event],
        &eventstore::Metadata::for_command(Uuid::now_v7()),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn append_restock(pool: &PgPool, id: Uuid, quantity: i64) {
    let event = domain::product::ProductEvent::ProductRestocked { quantity };
    append(pool, "inventory", id, NewEvent::from_domain(&event)).await;
}

async fn append_register(pool: &PgPool, id: Uuid) {
    let event = domain::product::ProductEvent::ProductRegistered {
        name: "late".to_owned(),
        price_cents: 10,
        initial_stock: 1,
    };
    append(pool, "inventory", id, NewEvent::from_domain(&event)).await;
}

async fn append_order(pool: &PgPool, id: Uuid, product: Uuid) {
    let event = domain::order::OrderEvent::OrderPlaced {
        user_id: "writer".to_owned(),
        lines: vec![domain::order::OrderLine {
            product_id: product,
            quantity: 1,
            unit_price_cents: 10,
        }],
        total_cents: 10,
        payment_token: "tok".to_owned(),
        placed_at: chrono::Utc::now(),
    };
    append(pool, "orders", id, NewEvent::from_domain(&event)).await;
}

/// Measures replay throughput on a few thousand events:
/// `cargo test -p projector --release --test replay -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark"]
async fn replay_throughput() {
    let h = Harness::new().await;
    let events = h.populate(1000, 2000).await;
    for batch_size in [100, 1000] {
        let mut options = replay_options(&[]);
        options.batch_size = batch_size;
        let summary = projector::replay(h.pool(), &options).await.unwrap();
        assert_eq!(summary.events, events.len() as u64);
        eprintln!("batch size {batch_size}: {summary}");
    }
}
