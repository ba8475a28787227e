//! `bench`: load generator for a running system (`make run`). Prints
//! throughput and latency figures for the write path, the end-to-end lag
//! until a write is visible in the query API, and contended writes to one
//! stream.

mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::stream::{self, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use stats::Samples;

/// Measures the running system over HTTP. Bounded: it sends exactly the
/// requests its flags ask for, to the given local addresses, and stops.
#[derive(Debug, Parser)]
#[command(name = "bench", version)]
struct Config {
    /// Base URL of the command API.
    #[arg(long, env = "COMMAND_API_URL", default_value = "http://127.0.0.1:8080")]
    command_api: String,
    /// Base URL of the query API.
    #[arg(long, env = "QUERY_API_URL", default_value = "http://127.0.0.1:8081")]
    query_api: String,
    /// Products registered before the order phase.
    #[arg(long, default_value_t = 20)]
    products: usize,
    /// Orders placed in the order phase.
    #[arg(long, default_value_t = 2000)]
    orders: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Concurrent restocks of a single product in the contention phase.
    #[arg(long, default_value_t = 400)]
    contended_restocks: usize,
    /// Longest wait for a write to become visible in the query API (ms).
    #[arg(long, default_value_t = 30_000)]
    visibility_timeout_ms: u64,
    /// Also wait until each order is settled by the saga (CONFIRMED, …) and
    /// report that latency; needs the saga worker and the gateway running.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    settle: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Arc::new(Config::parse());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(config.concurrency)
        .build()?;
    for (name, base) in [
        ("command API", &config.command_api),
        ("query API", &config.query_api),
    ] {
        let ready = client.get(format!("{base}/health/ready")).send().await;
        if !matches!(ready, Ok(ref r) if r.status().is_success()) {
            bail!("the {name} at {base} is not ready; start the system with `make run`");
        }
    }
    println!(
        "bench: {} products, {} orders, {} concurrent clients, {} contended restocks",
        config.products, config.orders, config.concurrency, config.contended_restocks
    );

    let products = register_products(&client, &config).await?;
    place_orders(&client, &config, &products).await?;
    if config.contended_restocks > 0 {
        contended_restocks(&client, &config, products[0].clone()).await?;
    }
    Ok(())
}

async fn register_products(
    client: &reqwest::Client,
    config: &Config,
) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    let mut ids = Vec::with_capacity(config.products);
    for n in 0..config.products {
        let response = client
            .post(format!("{}/products", config.command_api))
            .json(&json!({"name": format!("bench product {n}"), "price_cents": 100 + n, "initial_stock": 1_000_000}))
            .send()
            .await?;
        let body = expect(response, StatusCode::CREATED).await?;
        ids.push(
            body["product_id"]
                .as_str()
                .context("product_id")?
                .to_owned(),
        );
    }
    println!(
        "register products: {} in {:.2?}",
        ids.len(),
        started.elapsed()
    );
    Ok(ids)
}

/// Places orders from `concurrency` clients; for each, measures the command
/// latency and the lag until the query API shows that version.
async fn place_orders(
    client: &reqwest::Client,
    config: &Config,
    products: &[String],
) -> anyhow::Result<()> {
    let started = Instant::now();
    let results: Vec<anyhow::Result<(Duration, Duration, Option<Duration>)>> =
        stream::iter(0..config.orders)
            .map(|n| {
                let product = &products[n % products.len()];
                async move {
                    let sent = Instant::now();
                    let response = client
                        .post(format!("{}/orders", config.command_api))
                        .json(&json!({
                            "user_id": format!("bench-user-{}", n % 100),
                            "lines": [{"product_id": product, "quantity": 1}],
                            "payment": {"token": "tok_bench"}
                        }))
                        .send()
                        .await?;
                    let body = expect(response, StatusCode::CREATED).await?;
                    let command_latency = sent.elapsed();
                    let order_id = body["order_id"].as_str().context("order_id")?;
                    let acknowledged = Instant::now();
                    wait_until(client, config, order_id, |_| true).await?;
                    let visible = acknowledged.elapsed();
                    let settled = if config.settle {
                        wait_until(client, config, order_id, |order| {
                            matches!(
                                order["status"].as_str(),
                                Some("CONFIRMED" | "REJECTED" | "CANCELLED")
                            )
                        })
                        .await?;
                        Some(acknowledged.elapsed())
                    } else {
                        None
                    };
                    Ok((command_latency, visible, settled))
                }
            })
            .buffer_unordered(config.concurrency)
            .collect()
            .await;
    let elapsed = started.elapsed();
    let mut commands = Samples::default();
    let mut lag = Samples::default();
    let mut settle = Samples::default();
    for result in results {
        let (command, visible, settled) = result?;
        commands.push(command);
        lag.push(visible);
        if let Some(settled) = settled {
            settle.push(settled);
        }
    }
    println!(
        "place orders: {} in {:.2?} = {:.0} orders/s (each then read back from the query API)",
        commands.len(),
        elapsed,
        commands.len() as f64 / elapsed.as_secs_f64()
    );
    println!("  command latency        {}", commands.summary());
    println!("  201 → visible in query {}", lag.summary());
    if config.settle {
        println!("  201 → CONFIRMED (saga) {}", settle.summary());
    }
    Ok(())
}

/// Polls the order in the query API until it exists and `done` holds.
async fn wait_until(
    client: &reqwest::Client,
    config: &Config,
    order_id: &str,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(config.visibility_timeout_ms);
    loop {
        let response = client
            .get(format!("{}/orders/{order_id}", config.query_api))
            .send()
            .await?;
        if response.status() == StatusCode::OK && done(&response.json().await?) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "order {order_id} not in the expected state after {}ms",
                config.visibility_timeout_ms
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Many clients restock one product at once: every request must succeed
/// (the command API retries optimistic-concurrency conflicts internally).
async fn contended_restocks(
    client: &reqwest::Client,
    config: &Config,
    product: String,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let url = format!("{}/products/{product}/restock", config.command_api);
    let results: Vec<anyhow::Result<(StatusCode, Duration)>> =
        stream::iter(0..config.contended_restocks)
            .map(|_| {
                let url = url.clone();
                async move {
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .json(&json!({"quantity": 1}))
                        .send()
                        .await?;
                    Ok((response.status(), sent.elapsed()))
                }
            })
            .buffer_unordered(config.concurrency)
            .collect()
            .await;
    let elapsed = started.elapsed();
    let mut latencies = Samples::default();
    let (mut ok, mut conflicts, mut other) = (0, 0, 0);
    for result in results {
        let (status, latency) = result?;
        latencies.push(latency);
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => conflicts += 1,
            _ => other += 1,
        }
    }
    println!(
        "contended restocks of one product: {} in {:.2?} = {:.0}/s; 200: {ok}, 409 after retries: {conflicts}, other: {other}",
        config.contended_restocks,
        elapsed,
        config.contended_restocks as f64 / elapsed.as_secs_f64()
    );
    println!("  latency                {}", latencies.summary());
    Ok(())
}

async fn expect(response: reqwest::Response, status: StatusCode) -> anyhow::Result<Value> {
    let actual = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if actual != status {
        bail!("expected {status}, got {actual}: {body}");
    }
    Ok(body)
}
