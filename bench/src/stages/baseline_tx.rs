//! Baseline (a): what one command minimally must do, as raw SQL — in one
//! transaction read the stream's version, insert one event and one outbox
//! row, commit — from N concurrent clients on distinct streams.

use std::sync::Arc;

use sqlx::PgPool;
use uuid::Uuid;

use super::Suite;
use crate::env::BenchDb;
use crate::load::closed_loop;
use crate::results::Value;
use crate::sample;

/// Key of this baseline.
pub const KEY: &str = "raw_tx";

/// Runs this stage and records its figures.
pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let clients = suite.sizes.clients;
    let db = BenchDb::create("baseline_tx", clients as u32).await?;
    let measured = measure(db.pool.clone(), clients, suite.sizes.duration).await;
    db.remove().await?;
    let measured = measured?;
    let results = &mut suite.results;
    let name = format!("raw tx: stream version + event + outbox row ({clients} clients)");
    results.baseline("baselines", KEY, name, Value::rate(measured.rate(), "tx/s"));
    results.add(
        "baselines",
        "raw tx latency",
        Value::Latency(measured.latencies.percentiles()),
    );
    Ok(())
}

async fn measure(
    pool: PgPool,
    clients: usize,
    duration: std::time::Duration,
) -> anyhow::Result<crate::load::Measured> {
    let event = Arc::new(sample::order_placed_event());
    closed_loop(clients, duration, move |_, _| {
        let (pool, event) = (pool.clone(), event.clone());
        async move {
            let stream_id = Uuid::now_v7();
            let mut tx = pool.begin().await?;
            let version: Option<i64> = sqlx::query_scalar("SELECT version FROM eventstore.streams WHERE stream_id = $1")
                .bind(stream_id)
                .fetch_optional(&mut *tx)
                .await?;
            let position: i64 = sqlx::query_scalar(
                "INSERT INTO eventstore.events
                     (event_id, stream_id, stream_type, stream_version, event_type, schema_version, payload, metadata)
                 VALUES ($1, $2, 'orders', $3, $4, $5, $6, $7) RETURNING global_position",
            )
            .bind(Uuid::now_v7())
            .bind(stream_id)
            .bind(version.unwrap_or(0) + 1)
            .bind(&event.event_type)
            .bind(event.schema_version)
            .bind(&event.payload)
            .bind(&event.metadata)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO eventstore.outbox (global_position) VALUES ($1)")
                .bind(position)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }
    })
    .await
}
