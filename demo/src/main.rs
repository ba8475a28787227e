//! `demo`: against a running system (`make run`), places one order down
//! each path of the saga — confirmed, rejected for stock, declined, cancelled
//! by the user, a timeout resolved at the deadline, a flaky provider — waits
//! until each is settled and prints its timeline from the event log.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use uuid::Uuid;

/// Walks an order down each path of the saga and prints the timelines.
#[derive(Debug, Parser)]
#[command(name = "demo", version)]
struct Config {
    /// Base URL of the command API.
    #[arg(long, env = "COMMAND_API_URL", default_value = "http://127.0.0.1:8080")]
    command_api: String,
    /// Base URL of the query API.
    #[arg(long, env = "QUERY_API_URL", default_value = "http://127.0.0.1:8081")]
    query_api: String,
    /// The event log, read for the timelines.
    #[arg(long = "database-url", env = "DATABASE_URL", default_value = platform::db::DEFAULT_DATABASE_URL)]
    database_url: String,
    /// How long to wait for each order to settle (s).
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
}

struct Scenario {
    title: &'static str,
    token: &'static str,
    scarce: bool,
    cancel: bool,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario {
        title: "paid → CONFIRMED",
        token: "tok_ok",
        scarce: false,
        cancel: false,
    },
    Scenario {
        title: "second line out of stock → REJECTED (first line released)",
        token: "tok_ok",
        scarce: true,
        cancel: false,
    },
    Scenario {
        title: "payment declined → CANCELLED (stock released)",
        token: "tok_decline_insufficient_funds",
        scarce: false,
        cancel: false,
    },
    Scenario {
        title: "cancelled by the user while paying → CANCELLED",
        token: "tok_hang",
        scarce: false,
        cancel: true,
    },
    Scenario {
        title: "provider answers too late, but captured → CONFIRMED at the deadline",
        token: "tok_timeout",
        scarce: false,
        cancel: false,
    },
    Scenario {
        title: "flaky provider (503, 503, ok) → CONFIRMED",
        token: "tok_flaky",
        scarce: false,
        cancel: false,
    },
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let http = reqwest::Client::new();
    for (name, base) in [
        ("command API", &config.command_api),
        ("query API", &config.query_api),
    ] {
        let ready = http.get(format!("{base}/health/ready")).send().await;
        if !matches!(ready, Ok(ref r) if r.status().is_success()) {
            bail!("the {name} at {base} is not ready; start the system with `make run`");
        }
    }
    let pool = sqlx::PgPool::connect(&config.database_url)
        .await
        .context("connecting to the event log")?;

    let mug = post(
        &http,
        &config.command_api,
        "/products",
        json!({"name": "Demo mug", "price_cents": 1250, "initial_stock": 100}),
    )
    .await?;
    let mug = mug["product_id"].as_str().context("product_id")?.to_owned();
    let rare = post(
        &http,
        &config.command_api,
        "/products",
        json!({"name": "Demo rarity", "price_cents": 9900, "initial_stock": 1}),
    )
    .await?;
    let rare = rare["product_id"]
        .as_str()
        .context("product_id")?
        .to_owned();

    let mut orders = Vec::new();
    for scenario in &SCENARIOS {
        let mut lines = vec![json!({"product_id": mug, "quantity": 2})];
        if scenario.scarce {
            lines.push(json!({"product_id": rare, "quantity": 5}));
        }
        let placed = post(
            &http,
            &config.command_api,
            "/orders",
            json!({"user_id": "demo", "lines": lines, "payment": {"token": scenario.token}}),
        )
        .await?;
        let order_id = placed["order_id"].as_str().context("order_id")?.to_owned();
        orders.push((scenario, order_id));
    }
    for (scenario, order_id) in &orders {
        if scenario.cancel {
            wait_for(&http, &config, order_id, |s| s == "AWAITING_PAYMENT").await?;
            post(
                &http,
                &config.command_api,
                &format!("/orders/{order_id}/cancel"),
                json!({}),
            )
            .await?;
        }
    }
    for (scenario, order_id) in &orders {
        let order = wait_for(&http, &config, order_id, |s| {
            matches!(s, "CONFIRMED" | "REJECTED" | "CANCELLED")
        })
        .await?;
        println!("\n== {} ==", scenario.title);
        println!(
            "order {order_id}: {}{}  total {} cents  payment {}",
            order["status"].as_str().unwrap_or("?"),
            order["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            order["total_cents"],
            order["payment"]["status"].as_str().unwrap_or("none"),
        );
        print_timeline(&pool, order_id.parse()?).await?;
    }
    Ok(())
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let response = http
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("POST {path}: {status} {body}");
    }
    Ok(body)
}

async fn wait_for(
    http: &reqwest::Client,
    config: &Config,
    order_id: &str,
    done: impl Fn(&str) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(config.timeout_s);
    loop {
        let response = http
            .get(format!("{}/orders/{order_id}", config.query_api))
            .send()
            .await?;
        if response.status().is_success() {
            let order: Value = response.json().await?;
            if done(order["status"].as_str().unwrap_or_default()) {
                return Ok(order);
            }
        }
        if Instant::now() > deadline {
            bail!(
                "order {order_id} did not settle within {}s",
                config.timeout_s
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every event about the order — its own stream, its payment stream and
/// the reservations on product streams — in log order.
async fn print_timeline(pool: &sqlx::PgPool, order_id: Uuid) -> anyhow::Result<()> {
    let events: Vec<(chrono::DateTime<chrono::Utc>, String, String, Value, Value)> =
        sqlx::query_as(
            "SELECT recorded_at, stream_type, event_type, payload, metadata FROM eventstore.events
         WHERE stream_id = $1 OR stream_id = $2 OR payload->>'order_id' = $1::text
         ORDER BY global_position",
        )
        .bind(order_id)
        .bind(domain::payment::payment_id_for(order_id))
        .fetch_all(pool)
        .await?;
    let Some(start) = events.first().map(|e| e.0) else {
        return Ok(());
    };
    for (recorded_at, stream_type, event_type, payload, metadata) in events {
        let offset = (recorded_at - start).num_milliseconds();
        let mut detail = payload.clone();
        if let Some(map) = detail.as_object_mut() {
            for noisy in [
                "order_id",
                "lines",
                "placed_at",
                "user_id",
                "payment_token",
                "token",
            ] {
                map.remove(noisy);
            }
        }
        println!(
            "  +{:>6} ms  {:<9} {:<22} {}  (correlation {}…, caused by {}…)",
            offset,
            stream_type,
            event_type,
            detail,
            short(&metadata["correlation_id"]),
            short(&metadata["causation_id"]),
        );
    }
    Ok(())
}

/// The first 8 characters of a UUID string.
fn short(id: &Value) -> &str {
    let id = id.as_str().unwrap_or("");
    id.get(..8).unwrap_or(id)
}
