//! Baseline (c): a raw 100-row `INSERT … ON CONFLICT DO UPDATE` into a read
//! model table (`read.products`), from a few concurrent clients with
//! disjoint keys (a mix of inserts and updates, like a projection's).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::Suite;
use crate::env::BenchDb;
use crate::load::{closed_loop, Measured};
use crate::results::Value;

/// Key of this baseline.
pub const KEY: &str = "raw_upsert";
/// Rows per statement.
const ROWS: usize = 100;
/// Distinct keys per client: after the first pass every upsert is an update.
const KEYS_PER_CLIENT: usize = 20_000;

/// Runs this stage and records its figures.
pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let clients = suite.sizes.clients.min(4);
    let db = BenchDb::create("baseline_upsert", clients as u32).await?;
    let measured = measure(db.pool.clone(), clients, suite.sizes.duration).await;
    db.remove().await?;
    let measured = measured?;
    let rows_per_second = measured.rate() * ROWS as f64;
    let name = format!("raw {ROWS}-row upsert ({clients} clients)");
    suite.results.baseline(
        "baselines",
        KEY,
        name,
        Value::rate(rows_per_second, "rows/s"),
    );
    Ok(())
}

async fn measure(pool: PgPool, clients: usize, duration: Duration) -> anyhow::Result<Measured> {
    let keys: Arc<Vec<Vec<Uuid>>> = Arc::new(
        (0..clients)
            .map(|_| (0..KEYS_PER_CLIENT).map(|_| Uuid::now_v7()).collect())
            .collect(),
    );
    closed_loop(clients, duration, move |client, n| {
        let (pool, keys) = (pool.clone(), keys.clone());
        async move {
            let start = (n as usize * ROWS) % KEYS_PER_CLIENT;
            let ids: Vec<Uuid> = (0..ROWS).map(|i| keys[client][(start + i) % KEYS_PER_CLIENT]).collect();
            let versions: Vec<i64> = vec![n as i64 + 1; ROWS];
            sqlx::query(
                "INSERT INTO read.products (product_id, name, price_cents, available, reserved, sold, version, updated_at)
                 SELECT id, 'Product', 1250, 1000, 0, 0, v, now() FROM UNNEST($1::uuid[], $2::bigint[]) AS r(id, v)
                 ON CONFLICT (product_id) DO UPDATE
                 SET available = products.available - 1, reserved = products.reserved + 1,
                     version = EXCLUDED.version, updated_at = EXCLUDED.updated_at",
            )
            .bind(&ids)
            .bind(&versions)
            .execute(&pool)
            .await?;
            Ok(())
        }
    })
    .await
}
