//! Commands on one hot stream: N clients restock the same product (closed
//! loop) through the in-process command API. A 409 (conflict after the API's
//! own retries) is counted, not an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use reqwest::StatusCode;

use super::{baseline_tx, Suite};
use crate::env::BenchDb;
use crate::http;
use crate::load::{closed_loop, Measured};
use crate::results::Value;
use crate::system::Services;

/// Runs this stage and records its figures.
pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let db = BenchDb::create("hot_stream", 20).await?;
    let mut services = Services::new();
    let measured = measure(suite, &db, &mut services).await;
    services.stop().await;
    db.remove().await?;
    let (measured, conflicts) = measured?;
    let clients = suite.sizes.clients;
    let results = &mut suite.results;
    let name = format!("restocks of one product ({clients} clients)");
    results.against(
        "hot-stream",
        name,
        Value::rate(measured.rate(), "commands/s"),
        baseline_tx::KEY,
    );
    results.add(
        "hot-stream",
        "restock latency (one product)",
        Value::Latency(measured.latencies.percentiles()),
    );
    results.add(
        "hot-stream",
        "409 after the API's retries",
        Value::number(conflicts as f64, "answers"),
    );
    Ok(())
}

async fn measure(
    suite: &Suite,
    db: &BenchDb,
    services: &mut Services,
) -> anyhow::Result<(Measured, u64)> {
    let clients = suite.sizes.clients;
    let url = services.command_api(db.pool.clone()).await?;
    let client = http::client(clients)?;
    let product = http::register_product(&client, &url, "Hot product").await?;
    let restock = Arc::new(format!("{url}/products/{product}/restock"));
    let conflicts = Arc::new(AtomicU64::new(0));
    let counted = conflicts.clone();
    let measured = closed_loop(clients, suite.sizes.duration, move |_, _| {
        let (client, restock, conflicts) = (client.clone(), restock.clone(), counted.clone());
        async move {
            let (status, body) =
                http::post(&client, &restock, &serde_json::json!({"quantity": 1})).await?;
            match status {
                StatusCode::OK => {}
                StatusCode::CONFLICT => {
                    conflicts.fetch_add(1, Ordering::Relaxed);
                }
                other => anyhow::bail!("restock answered {other}: {body}"),
            }
            Ok(())
        }
    })
    .await?;
    Ok((measured, conflicts.load(Ordering::Relaxed)))
}
