//! HTTP helpers against the in-process APIs.

use std::time::Duration;

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::Value;

/// A client with a connection per concurrent caller.
pub fn client(connections: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(connections)
        .build()?)
}

/// POSTs `body` and returns the answer's status and JSON body.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> anyhow::Result<(StatusCode, Value)> {
    let response = client
        .post(url)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// POSTs `body`, fails unless the answer has `expected` status, returns the body.
pub async fn post_expect(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    expected: StatusCode,
) -> anyhow::Result<Value> {
    let (status, answer) = post(client, url, body).await?;
    anyhow::ensure!(
        status == expected,
        "POST {url}: expected {expected}, got {status}: {answer}"
    );
    Ok(answer)
}

/// Registers a product with plenty of stock; returns its id.
pub async fn register_product(
    client: &reqwest::Client,
    command_url: &str,
    name: &str,
) -> anyhow::Result<String> {
    let body =
        serde_json::json!({"name": name, "price_cents": 1250, "initial_stock": 1_000_000_000});
    let answer = post_expect(
        client,
        &format!("{command_url}/products"),
        &body,
        StatusCode::CREATED,
    )
    .await?;
    Ok(answer["product_id"]
        .as_str()
        .context("product_id in the answer")?
        .to_owned())
}

/// The body of `POST /orders` for one unit of `product`.
pub fn order_body(user: u64, product: &str) -> Value {
    serde_json::json!({
        "user_id": format!("bench-user-{}", user % 1000),
        "lines": [{"product_id": product, "quantity": 1}],
        "payment": {"token": "tok_ok"}
    })
}

/// Places an order; returns its id.
pub async fn place_order(
    client: &reqwest::Client,
    command_url: &str,
    user: u64,
    product: &str,
) -> anyhow::Result<String> {
    let answer = post_expect(
        client,
        &format!("{command_url}/orders"),
        &order_body(user, product),
        StatusCode::CREATED,
    )
    .await?;
    Ok(answer["order_id"]
        .as_str()
        .context("order_id in the answer")?
        .to_owned())
}
