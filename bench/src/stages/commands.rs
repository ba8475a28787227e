//! Commands on distinct streams through HTTP against the in-process command
//! API (nothing else running): product registrations (a new stream each, the
//! closest match to the raw transaction) and orders (a new order stream
//! each, priced from the product streams), closed loop for the maximum rate;
//! then orders open loop at half that rate, for latency under load.

use std::sync::Arc;
use std::time::Duration;

use super::{baseline_tx, Suite};
use crate::env::BenchDb;
use crate::http;
use crate::load::{closed_loop, open_loop, Measured};
use crate::results::Value;
use crate::system::Services;

/// Products the orders are spread over.
const PRODUCTS: usize = 100;

/// What the stage measured.
struct Measurements {
    products: Measured,
    orders: Measured,
    half_rate: f64,
    at_half_rate: Measured,
}

/// Runs this stage and records its figures.
pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let db = BenchDb::create("commands", 20).await?;
    let mut services = Services::new();
    let measured = measure(suite, &db, &mut services).await;
    services.stop().await;
    db.remove().await?;
    let m = measured?;
    let clients = suite.sizes.clients;
    let results = &mut suite.results;
    let stage = "commands";
    let name = format!("POST /products, new stream each ({clients} clients)");
    let rate = Value::rate(m.products.rate(), "commands/s");
    results.against(stage, name, rate, baseline_tx::KEY);
    let latency = Value::Latency(m.products.latencies.percentiles());
    results.add(stage, "POST /products latency", latency);
    let name = format!("POST /orders, new order stream each ({clients} clients)");
    let rate = Value::rate(m.orders.rate(), "commands/s");
    results.against(stage, name, rate, baseline_tx::KEY);
    let latency = Value::Latency(m.orders.latencies.percentiles());
    results.add(stage, "POST /orders latency", latency);
    let name = format!(
        "POST /orders latency at half that rate ({:.0}/s open loop)",
        m.half_rate
    );
    results.add(
        stage,
        name,
        Value::Latency(m.at_half_rate.latencies.percentiles()),
    );
    Ok(())
}

async fn measure(
    suite: &Suite,
    db: &BenchDb,
    services: &mut Services,
) -> anyhow::Result<Measurements> {
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
    let place = move |user: u64| {
        let (client, url, catalog) = (client.clone(), url.clone(), catalog.clone());
        async move {
            let product = &catalog[user as usize % catalog.len()];
            http::place_order(&client, &url, user, product)
                .await
                .map(drop)
        }
    };
    let closed = place.clone();
    let orders = closed_loop(clients, duration, move |worker, n| {
        closed(worker as u64 * 1_000_003 + n)
    })
    .await?;
    let half_rate = (orders.rate() / 2.0).max(1.0);
    let drain = Duration::from_secs(30);
    let at_half_rate =
        open_loop(half_rate, duration, drain, move |n| place(u64::MAX / 2 + n)).await?;
    Ok(Measurements {
        products,
        orders,
        half_rate,
        at_half_rate,
    })
}
