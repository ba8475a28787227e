//! Shared test harness: a fresh database per test and the app on a random port.

#![allow(dead_code)]

use std::net::SocketAddr;

use command_api::AppState;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use sqlx::PgPool;
use testkit::TestDatabase;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A running command API over its own database.
pub struct TestApp {
    /// Where the app listens.
    pub address: SocketAddr,
    /// The test's database (its pool connects directly, never through a proxy).
    pub db: TestDatabase,
    /// An HTTP client.
    pub client: reqwest::Client,
    shutdown: CancellationToken,
}

/// Starts the app over a fresh, migrated database.
pub async fn spawn_app() -> TestApp {
    let db = TestDatabase::create().await;
    let pool = db.pool.clone();
    spawn_app_with_pool(db, pool).await
}

/// Starts the app over `pool` (e.g. one that goes through a `TcpProxy`).
pub async fn spawn_app_with_pool(db: TestDatabase, pool: PgPool) -> TestApp {
    let state = AppState::new(pool);
    spawn_app_with_state(db, state).await
}

/// Starts the app with `state` (e.g. with other writer settings).
pub async fn spawn_app_with_state(db: TestDatabase, state: AppState) -> TestApp {
    testkit::init_logging();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let address = listener.local_addr().expect("app address");
    let shutdown = CancellationToken::new();
    let app = command_api::router(state);
    tokio::spawn(platform::http::serve(listener, app, shutdown.clone()));
    TestApp {
        address,
        db,
        client: reqwest::Client::new(),
        shutdown,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// A POST of `body` as JSON to `path`, to add headers to before sending.
    pub fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).json(body)
    }

    /// POSTs `body` as JSON to `path`.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post(path, body).send().await.expect("request sent")
    }

    /// POSTs raw bytes with an optional content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        request.send().await.expect("request sent")
    }

    /// Registers a product and returns its id.
    pub async fn create_product(&self, price_cents: i64, initial_stock: i64) -> Uuid {
        let response = self
            .post_json(
                "/products",
                &json!({"name": "Widget", "price_cents": price_cents, "initial_stock": initial_stock}),
            )
            .await;
        assert_eq!(response.status(), 201, "creating a product");
        let body: Value = response.json().await.expect("json body");
        body["product_id"]
            .as_str()
            .expect("product_id")
            .parse()
            .expect("uuid")
    }

    /// Restocks a product and returns the response.
    pub async fn restock(&self, product_id: Uuid, quantity: i64) -> reqwest::Response {
        self.post_json(
            &format!("/products/{product_id}/restock"),
            &json!({ "quantity": quantity }),
        )
        .await
    }

    /// The stream's events.
    pub async fn events(&self, stream_id: Uuid) -> Vec<eventstore::EventEnvelope> {
        let mut conn = self.db.pool.acquire().await.expect("connection");
        eventstore::read_stream(&mut conn, stream_id, 0)
            .await
            .expect("read stream")
    }

    /// `(stream_version, global_position, has an outbox row)` of each event of the stream.
    pub async fn stream_rows(&self, stream_id: Uuid) -> Vec<(i64, i64, bool)> {
        sqlx::query_as(
            "SELECT e.stream_version, e.global_position, o.global_position IS NOT NULL
             FROM eventstore.events e LEFT JOIN eventstore.outbox o USING (global_position)
             WHERE e.stream_id = $1 ORDER BY e.stream_version",
        )
        .bind(stream_id)
        .fetch_all(&self.db.pool)
        .await
        .expect("stream rows")
    }

    /// Row counts of the log, the outbox and the idempotency keys.
    pub async fn counts(&self) -> Counts {
        let (events, outbox, keys, streams) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM eventstore.events),
                    (SELECT count(*) FROM eventstore.outbox),
                    (SELECT count(*) FROM command.idempotency_keys),
                    (SELECT count(*) FROM eventstore.streams)",
        )
        .fetch_one(&self.db.pool)
        .await
        .expect("counts");
        Counts {
            events,
            outbox,
            keys,
            streams,
        }
    }
}

/// Row counts of the tables a command writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// `eventstore.events`.
    pub events: i64,
    /// `eventstore.outbox`.
    pub outbox: i64,
    /// `command.idempotency_keys`.
    pub keys: i64,
    /// `eventstore.streams`.
    pub streams: i64,
}

/// Asserts `response` is an RFC 9457 problem with `status` and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(
        content_type, "application/problem+json",
        "content type of {body}"
    );
    assert_eq!(body["status"], status, "status field of {body}");
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "{field} missing in {body}");
    }
    body
}

/// Asserts `response` has `status` and a JSON body, and returns the body.
pub async fn assert_json(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status();
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(actual, status, "status (body: {body})");
    body
}

/// A well-formed order body for `lines` of `(product, quantity)`.
pub fn order_body(user_id: &str, lines: &[(Uuid, i64)]) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(product_id, quantity)| json!({"product_id": product_id, "quantity": quantity}))
        .collect();
    json!({"user_id": user_id, "lines": lines, "payment": {"token": "tok_visa"}})
}
