//! Cost as work grows: command latency with an empty log and with the
//! generated log behind it, and restock latency on a product stream of one
//! event and on the hot product's long stream (from the same log). One
//! client, sequential, so each latency is a command's own cost.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::Suite;
use crate::env::BenchDb;
use crate::http;
use crate::results::Value;
use crate::stats::Samples;
use crate::system::Services;

/// Runs this stage and records its figures.
pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let duration = suite.sizes.duration / 2;
    let empty = BenchDb::create("growth_empty", 10).await?;
    let mut services = Services::new();
    let on_empty = orders_on_empty(&empty, &mut services, duration).await;
    services.stop().await;
    empty.remove().await?;
    let on_empty = on_empty?;

    let fixture = suite.log().await?;
    let (events, hot_events) = (fixture.log.events, fixture.log.hot_stream_events);
    let hot = fixture.log.hot_product().to_string();
    let cold: Vec<String> = fixture
        .log
        .products
        .iter()
        .skip(1)
        .map(|p| p.to_string())
        .collect();
    let mut services = Services::new();
    let url = services.command_api(fixture.db.pool.clone()).await?;
    let measured = on_big_log(&url, &cold, &hot, duration).await;
    services.stop().await;
    let (on_log, fresh, (hot_first, hot_latencies)) = measured?;

    let results = &mut suite.results;
    results.add(
        "growth",
        "POST /orders latency, log of 10 products only",
        Value::Latency(on_empty.percentiles()),
    );
    results.add(
        "growth",
        format!("POST /orders latency, {events} events in the log"),
        Value::Latency(on_log.percentiles()),
    );
    results.add(
        "growth",
        "restock latency, 1-event product stream",
        Value::Latency(fresh.percentiles()),
    );
    let name = format!("restock latency, {hot_events}-event product stream");
    results.add(
        "growth",
        name.clone(),
        Value::Latency(hot_latencies.percentiles()),
    );
    results.add(
        "growth",
        format!("first {name} (cold)"),
        Value::number(hot_first.as_secs_f64() * 1000.0, "ms"),
    );
    let ratio = hot_latencies.percentiles().p50_ms / fresh.percentiles().p50_ms.max(f64::EPSILON);
    results.add(
        "growth",
        format!("restock p50, {hot_events}-event / 1-event stream"),
        Value::number(ratio, "×"),
    );
    Ok(())
}

async fn orders_on_empty(
    db: &BenchDb,
    services: &mut Services,
    duration: Duration,
) -> anyhow::Result<Samples> {
    let url = services.command_api(db.pool.clone()).await?;
    let client = http::client(1)?;
    let mut products = Vec::new();
    for n in 0..10 {
        products.push(http::register_product(&client, &url, &format!("Product {n}")).await?);
    }
    sequential(duration, |n| {
        let (client, url, product) = (&client, &url, &products[n as usize % products.len()]);
        async move { http::place_order(client, url, n, product).await.map(drop) }
    })
    .await
}

/// Orders over the log's products, restocks of a new product, restocks of the hot one.
async fn on_big_log(
    url: &str,
    cold: &[String],
    hot: &str,
    duration: Duration,
) -> anyhow::Result<(Samples, Samples, (Duration, Samples))> {
    let client = http::client(1)?;
    let orders = sequential(duration, |n| {
        let product = &cold[(n as usize * 7919) % cold.len()];
        let (client, url) = (&client, url);
        async move { http::place_order(client, url, n, product).await.map(drop) }
    })
    .await?;
    let fresh = http::register_product(&client, url, "Fresh product").await?;
    let fresh = sequential(duration, |_| restock(&client, url, &fresh)).await?;
    let first = Instant::now();
    restock(&client, url, hot).await?;
    let first = first.elapsed();
    let hot = sequential(duration, |_| restock(&client, url, hot)).await?;
    Ok((orders, fresh, (first, hot)))
}

async fn restock(client: &reqwest::Client, url: &str, product: &str) -> anyhow::Result<()> {
    let restock = format!("{url}/products/{product}/restock");
    http::post_expect(
        client,
        &restock,
        &serde_json::json!({"quantity": 1}),
        StatusCode::OK,
    )
    .await
    .map(drop)
}

/// Runs `op(0)`, `op(1)`, … one after another for `duration` (at least once).
async fn sequential<F, Fut>(duration: Duration, op: F) -> anyhow::Result<Samples>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let deadline = Instant::now() + duration;
    let mut samples = Samples::default();
    let mut n = 0;
    while n == 0 || Instant::now() < deadline {
        let sent = Instant::now();
        op(n).await?;
        samples.push(sent.elapsed());
        n += 1;
    }
    Ok(samples)
}
