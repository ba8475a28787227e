//! Commands on distinct streams through HTTP against the in-process command
//! API (nothing else running), closed loop: product registrations (a new
//! stream each, the closest match to the raw transaction) and orders (a new
//! order stream each, priced from the product streams).

use std::sync::Arc;

use super::{baseline_tx, Suite};
use crate::env::BenchDb;
use crate::http;
use crate::load::{closed_loop, Measured};
use crate::results::Value;
use crate::system::Services;

/// Products the orders are spread over.
const PRODUCTS: usize = 100;

/// Runs this stage and records its figures.
pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let db = BenchDb::create("commands", 20).await?;
    let mut services = Services::new();
    let measured = measure(suite, &db, &mut services).await;
    services.stop().await;
    db.remove().await?;
    let (products, orders) = measured?;
    let clients = suite.sizes.clients;
    let results = &mut suite.results;
    let name = format!("POST /products, new stream each ({clients} clients)");
    results.against(
        "commands",
        name,
        Value::rate(products.rate(), "commands/s"),
        baseline_tx::KEY,
    );
    results.add(
        "commands",
        "POST /products latency",
        Value::Latency(products.latencies.percentiles()),
    );
    let name = format!("POST /orders, new order stream each ({clients} clients)");
    results.against(
        "commands",
        name,
        Value::rate(orders.rate(), "commands/s"),
        baseline_tx::KEY,
    );
    results.add(
        "commands",
        "POST /orders latency",
        Value::Latency(orders.latencies.percentiles()),
    );
    Ok(())
}

async fn measure(
    suite: &Suite,
    db: &BenchDb,
    services: &mut Services,
) -> anyhow::Result<(Measured, Measured)> {
    let (clients, duration) = (suite.sizes.clients, suite.sizes.duration);
    let url = Arc::new(services.command_api(db.pool.clone()).await?);
    let client = http::client(clients)?;
    let (c, u) = (client.clone(), url.clone());
    let products = closed_loop(clients, duration, move |worker, n| {
        let (client, url) = (c.clone(), u.clone());
        async move {
            http::register_product(&client, &url, &format!("Product {worker}-{n}")).await?;
            Ok(())
        }
    })
    .await?;
    let mut catalog = Vec::with_capacity(PRODUCTS);
    for n in 0..PRODUCTS {
        catalog.push(http::register_product(&client, &url, &format!("Catalog {n}")).await?);
    }
    let catalog = Arc::new(catalog);
    let orders = closed_loop(clients, duration, move |worker, n| {
        let (client, url, catalog) = (client.clone(), url.clone(), catalog.clone());
        async move {
            let user = worker as u64 * 1_000_003 + n;
            http::place_order(&client, &url, user, &catalog[user as usize % catalog.len()]).await?;
            Ok(())
        }
    })
    .await?;
    Ok((products, orders))
}
