//! Measures replay and live catch-up on generated logs, with the raw
//! baselines of the same run (a `COPY` scan of the log, a 100-row upsert
//! loop). Not a test of speed: it prints figures.
//!
//! `PROJECTOR_BENCH_EVENTS=100000,1000000 cargo test -p projector --release \
//!  --test throughput -- --ignored --nocapture`

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Harness;
use futures::StreamExt;
use sqlx::PgPool;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark"]
async fn replay_and_catch_up_throughput() {
    let sizes = std::env::var("PROJECTOR_BENCH_EVENTS").unwrap_or_else(|_| "100000".to_owned());
    for size in sizes
        .split(',')
        .map(|s| s.trim().parse::<usize>().expect("a size"))
    {
        let h = Harness::new().await;
        let started = Instant::now();
        let events = common::generate::generate(h.pool(), size).await;
        eprintln!(
            "[{events} events] generated in {:.1}s",
            started.elapsed().as_secs_f64()
        );

        let scan = copy_scan(h.pool()).await;
        eprintln!("[{events} events] baseline COPY scan of the log: {scan:.2}s");
        let upserts = upsert_rate(h.pool(), 4, Duration::from_secs(3)).await;
        eprintln!("[{events} events] baseline 100-row upsert, 4 clients: {upserts:.0} rows/s");
        let upserts_1 = upsert_rate(h.pool(), 1, Duration::from_secs(3)).await;
        eprintln!("[{events} events] baseline 100-row upsert, 1 client: {upserts_1:.0} rows/s");

        let started = Instant::now();
        let output = run_replay(&h.db.url).await;
        let elapsed = started.elapsed().as_secs_f64();
        eprintln!(
            "[{events} events] `projector replay`: {elapsed:.2}s ({:.0} events/s, {:.2}× the upsert baseline, {:.2}× the COPY scan time) — {}",
            events as f64 / elapsed,
            events as f64 / elapsed / upserts,
            elapsed / scan,
            output.trim()
        );

        let rate = catch_up(&h, events).await;
        eprintln!(
            "[{events} events] live catch-up of the Kafka backlog: {rate:.0} events/s ({:.2}× the upsert baseline)",
            rate / upserts
        );
        drop_database(&h).await;
    }
}

/// Seconds to stream the whole log out with `COPY`.
async fn copy_scan(pool: &PgPool) -> f64 {
    let mut conn = pool.acquire().await.unwrap();
    let started = Instant::now();
    let mut bytes = 0;
    let mut out = conn
        .copy_out_raw("COPY (SELECT * FROM eventstore.events) TO STDOUT")
        .await
        .unwrap();
    while let Some(chunk) = out.next().await {
        bytes += chunk.unwrap().len();
    }
    assert!(bytes > 0);
    started.elapsed().as_secs_f64()
}

/// Rows/s of `clients` loops of 100-row `INSERT … ON CONFLICT DO UPDATE`
/// into a copy of `read.products` (inserts first, then updates).
async fn upsert_rate(pool: &PgPool, clients: usize, duration: Duration) -> f64 {
    sqlx::query("DROP TABLE IF EXISTS read.bench_upsert")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE read.bench_upsert (LIKE read.products INCLUDING ALL)")
        .execute(pool)
        .await
        .unwrap();
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let loops = (0..clients).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let keys: Arc<Vec<Uuid>> = Arc::new((0..20_000).map(|_| Uuid::now_v7()).collect());
            let mut rows = 0_u64;
            let mut n = 0_usize;
            while Instant::now() < deadline {
                let ids: Vec<Uuid> = (0..100).map(|i| keys[(n * 100 + i) % keys.len()]).collect();
                let versions = vec![n as i64 + 1; 100];
                sqlx::query(
                    "INSERT INTO read.bench_upsert (product_id, name, price_cents, available, reserved, sold, version, updated_at)
                     SELECT id, 'Product', 1250, 1000, 0, 0, v, now() FROM UNNEST($1::uuid[], $2::bigint[]) AS r(id, v)
                     ON CONFLICT (product_id) DO UPDATE
                     SET available = bench_upsert.available - 1, reserved = bench_upsert.reserved + 1,
                         version = EXCLUDED.version, updated_at = EXCLUDED.updated_at",
                )
                .bind(&ids)
                .bind(&versions)
                .execute(&pool)
                .await
                .unwrap();
                rows += 100;
                n += 1;
            }
            rows
        })
    });
    let mut rows = 0;
    for handle in loops.collect::<Vec<_>>() {
        rows += handle.await.unwrap();
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

/// Runs the release `projector replay` binary; returns its summary line.
async fn run_replay(database_url: &str) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_projector"));
    command
        .args(["replay", "--batch-size", "4000"])
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "info");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let phases = stderr.lines().filter(|l| l.contains("replay phases"));
    format!(
        "{} {}",
        String::from_utf8_lossy(&output.stdout).trim(),
        phases.collect::<Vec<_>>().join("")
    )
}

/// Relays the whole log to Kafka, empties the read models, then times a
/// fresh consumer group from its first message to the last commit.
async fn catch_up(h: &Harness, events: usize) -> f64 {
    let relay = h.relay();
    let pool = h.pool().clone();
    testkit::eventually(
        "the relay to drain the outbox",
        Duration::from_secs(600),
        || {
            let pool = pool.clone();
            async move {
                let left: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.outbox")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                (left == 0).then_some(())
            }
        },
    )
    .await;
    relay.stop().await;
    sqlx::query("TRUNCATE read.products, read.orders, read.user_orders, read.payments")
        .execute(h.pool())
        .await
        .unwrap();

    let consumer = h.consumer(&h.group());
    let stats = consumer.stats.clone();
    let first = testkit::eventually("the first message", Duration::from_secs(60), || {
        let received = stats.received();
        async move { (received > 0).then(Instant::now) }
    })
    .await;
    let total = events as u64;
    let stats = consumer.stats.clone();
    testkit::eventually("the backlog applied", Duration::from_secs(600), || {
        let done = stats.committed() + stats.parked();
        async move { (done >= total).then_some(()) }
    })
    .await;
    let elapsed = first.elapsed().as_secs_f64();
    assert_eq!(consumer.stats.parked(), 0);
    eprintln!(
        "[{events} events] catch-up: {} partition batches",
        consumer.stats.batches()
    );
    consumer.stop().await;
    assert_eq!(common::lagging_streams(h.pool()).await, 0);
    events as f64 / elapsed
}

/// Drops the test database (a million events take a gigabyte).
async fn drop_database(h: &Harness) {
    h.db.pool.close().await;
    let admin = sqlx::PgPool::connect(&testkit::database::admin_url())
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", h.db.name))
        .execute(&admin)
        .await
        .unwrap();
}
