//! Query API: `GET /orders/{id}` on random orders of a generated log (read
//! models built by `projector::replay`), closed loop, against the in-process
//! query API connected as the SELECT-only role.

use std::sync::Arc;

use anyhow::Context;
use reqwest::StatusCode;

use super::{replay, Suite};
use crate::env::BenchDb;
use crate::generate::{generate, LogSpec};
use crate::http;
use crate::load::{closed_loop, Measured};
use crate::results::Value;
use crate::system::Services;

/// Runs this stage and records its figures.
pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let db = BenchDb::create("query", 8).await?;
    let mut services = Services::new();
    let measured = measure(suite, &db, &mut services).await;
    services.stop().await;
    db.remove().await?;
    let (measured, orders) = measured?;
    let clients = suite.sizes.clients;
    let results = &mut suite.results;
    let name = format!("GET /orders/{{id}} over {orders} orders ({clients} clients)");
    results.add("query", name, Value::rate(measured.rate(), "requests/s"));
    results.add(
        "query",
        "GET /orders/{id} latency",
        Value::Latency(measured.latencies.percentiles()),
    );
    Ok(())
}

async fn measure(
    suite: &Suite,
    db: &BenchDb,
    services: &mut Services,
) -> anyhow::Result<(Measured, usize)> {
    let log = generate(&db.pool, &LogSpec::new(suite.sizes.backlog_events)).await?;
    replay::rebuild(&db.pool)
        .await
        .context("building the read models")?;
    let url = services.query_api(db).await?;
    let client = http::client(suite.sizes.clients)?;
    let orders = Arc::new(log.orders);
    let count = orders.len();
    let measured = closed_loop(
        suite.sizes.clients,
        suite.sizes.duration,
        move |worker, n| {
            let (client, url, orders) = (client.clone(), url.clone(), orders.clone());
            async move {
                let order = orders[(worker * 7919 + n as usize * 104_729) % orders.len()];
                let response = client.get(format!("{url}/orders/{order}")).send().await?;
                let status = response.status();
                let body = response.bytes().await?;
                anyhow::ensure!(
                    status == StatusCode::OK,
                    "GET /orders/{order} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
                Ok(())
            }
        },
    )
    .await?;
    Ok((measured, count))
}
