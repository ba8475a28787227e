//! `TestGateway`: a fresh database, the simulator on port 0, request helpers.

use std::net::SocketAddr;
use std::time::Duration;

use payment_gateway::ledger::Charge;
use payment_gateway::{AppState, Behaviour};
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::TestDatabase;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The simulator under test, over a database of its own.
pub struct TestGateway {
    pub address: SocketAddr,
    pub db: TestDatabase,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

/// A response, read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Value,
}

impl Reply {
    /// Reads `response` to the end.
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().expect("ascii header").to_owned());
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Self {
            status,
            content_type,
            body,
        }
    }

    /// Asserts a JSON response with `status` and returns its body.
    pub fn assert_json(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.content_type.as_deref(), Some("application/json"));
        &self.body
    }

    /// Asserts a problem+json response with `status` and returns its body.
    pub fn assert_problem(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/problem+json")
        );
        assert_eq!(self.body["status"], status, "{}", self.body);
        for field in ["type", "title", "detail"] {
            assert!(self.body[field].is_string(), "{field}: {}", self.body);
        }
        &self.body
    }
}

/// A well-formed charge body for a fresh reference.
pub fn charge_body(token: &str, amount_cents: i64) -> Value {
    charge_body_for(Uuid::new_v4(), token, amount_cents)
}

/// A well-formed charge body for `reference`.
pub fn charge_body_for(reference: Uuid, token: &str, amount_cents: i64) -> Value {
    json!({
        "amount_cents": amount_cents,
        "currency": "EUR",
        "token": token,
        "reference": reference,
    })
}

/// A fresh idempotency key.
pub fn new_key() -> String {
    format!("key-{}", Uuid::new_v4())
}

impl TestGateway {
    /// Default behaviour (no latency or failures, 10 s slow responses).
    pub async fn spawn() -> Self {
        Self::spawn_with(Behaviour::default()).await
    }

    /// A simulator behaving as `behaviour`.
    pub async fn spawn_with(behaviour: Behaviour) -> Self {
        Self::spawn_on(TestDatabase::create().await, behaviour).await
    }

    /// A simulator over an existing database.
    pub async fn spawn_on(db: TestDatabase, behaviour: Behaviour) -> Self {
        testkit::init_logging();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let app = payment_gateway::router(AppState::new(db.pool.clone(), behaviour));
        tokio::spawn(platform::http::serve(listener, app, shutdown.clone()));
        Self {
            address,
            db,
            http: reqwest::Client::new(),
            shutdown,
        }
    }

    /// A second simulator over this one's database (the first keeps running).
    pub async fn sibling(&self, behaviour: Behaviour) -> Self {
        Self::spawn_on(self.db.clone(), behaviour).await
    }

    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// A `POST /charges` with `key` (if any) and `body`, not yet sent.
    pub fn charge_request(
        &self,
        client: &reqwest::Client,
        key: Option<&str>,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        let request = client.post(self.url("/charges")).json(body);
        match key {
            Some(key) => request.header("Idempotency-Key", key),
            None => request,
        }
    }

    /// `POST /charges` with `key` and `body`.
    pub async fn charge(&self, key: &str, body: &Value) -> Reply {
        let response = self
            .charge_request(&self.http, Some(key), body)
            .send()
            .await
            .expect("request sent");
        Reply::read(response).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        let response = self.http.get(self.url(path)).send().await.expect("sent");
        Reply::read(response).await
    }

    /// `POST /charges/{id}/refund`, with an optional key.
    pub async fn refund(&self, charge_id: &str, key: Option<&str>) -> Reply {
        let mut request = self
            .http
            .post(self.url(&format!("/charges/{charge_id}/refund")));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        Reply::read(request.send().await.expect("sent")).await
    }

    /// Captures a charge and returns its body.
    pub async fn captured(&self, token: &str, amount_cents: i64) -> Value {
        let reply = self
            .charge(&new_key(), &charge_body(token, amount_cents))
            .await;
        reply.assert_json(201).clone()
    }

    /// Every row of the ledger, oldest first.
    pub async fn ledger(&self) -> Vec<Charge> {
        sqlx::query_as(
            "SELECT charge_id, idempotency_key, request_hash, reference, amount_cents, currency,
                    token, status, decline_code, created_at, refunded_at, refund_id
             FROM gateway.charges ORDER BY created_at, charge_id",
        )
        .fetch_all(&self.db.pool)
        .await
        .expect("read ledger")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A client that gives up after `timeout`.
pub fn impatient_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("client")
}
