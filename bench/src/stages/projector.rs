//! Projector catch-up: a backlog already in Kafka (generated through
//! `eventstore::append`, published by the real relay), then the live
//! projector started on it and timed until every event is applied.
//!
//! Applied is read from the read models themselves: each keeps its stream's
//! version, so the versions of `read.products`, `read.orders` and
//! `read.payments` add up to the number of events of those streams. The time
//! runs from the first applied event (so the consumer group's join is not
//! counted) to the last.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::{baseline_upsert, Suite};
use crate::env::{BenchDb, BenchKafka};
use crate::generate::{generate, LogSpec};
use crate::load::rate;
use crate::results::Value;
use crate::system::Services;

/// Longest time without progress before the stage fails.
const STALL: Duration = Duration::from_secs(120);

/// Runs this stage and records its figures.
pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let db = BenchDb::create("projector", 16).await?;
    let kafka = BenchKafka::create().await?;
    let measured = measure(&db, &kafka, suite.sizes.backlog_events).await;
    kafka.remove().await?;
    db.remove().await?;
    let (events, elapsed) = measured?;
    let name = format!("projector catch-up of a {events}-event Kafka backlog");
    suite.results.against(
        "projector",
        name,
        Value::rate(rate(events, elapsed), "events/s"),
        baseline_upsert::KEY,
    );
    Ok(())
}

async fn measure(
    db: &BenchDb,
    kafka: &BenchKafka,
    events: usize,
) -> anyhow::Result<(usize, Duration)> {
    let log = generate(&db.pool, &LogSpec::new(events)).await?;
    let mut relay = Services::new();
    relay.relay(db.pool.clone(), &kafka.config)?;
    wait_for(
        &db.pool,
        "the relay to publish the backlog",
        |pool| async move { outbox_rows(&pool).await.map(|n| n == 0) },
    )
    .await?;
    relay.stop().await;

    let mut projector = Services::new();
    projector.projector(
        db,
        &kafka.config,
        &format!("{}projector", kafka.config.topic_prefix),
    )?;
    let total = log.events as i64;
    let mut first: Option<(Instant, i64)> = None;
    let mut last_progress = (Instant::now(), 0);
    let outcome = loop {
        let applied = applied(&db.pool).await?;
        let now = Instant::now();
        if applied > last_progress.1 {
            last_progress = (now, applied);
            first.get_or_insert((now, applied));
        }
        if applied >= total {
            let (start, at_start) = first.expect("progress was seen");
            break Ok(((total - at_start) as usize, now - start));
        }
        if now - last_progress.0 > STALL {
            break Err(anyhow::anyhow!(
                "projector stalled at {applied} of {total} events"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    projector.stop().await;
    outcome
}

/// Events applied to the read models so far.
async fn applied(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT ((SELECT COALESCE(SUM(version), 0) FROM read.products)
               + (SELECT COALESCE(SUM(version), 0) FROM read.orders)
               + (SELECT COALESCE(SUM(version), 0) FROM read.payments))::bigint",
    )
    .fetch_one(pool)
    .await?)
}

async fn outbox_rows(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM eventstore.outbox")
        .fetch_one(pool)
        .await?)
}

/// Polls `done` until it holds, failing after [`STALL`].
pub async fn wait_for<F, Fut>(pool: &PgPool, what: &str, done: F) -> anyhow::Result<()>
where
    F: Fn(PgPool) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + STALL;
    while !done(pool.clone()).await? {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
