//! `TestApp`: a fresh database, the API on port 0 connected as the query
//! role, request helpers, and seeding of the read models as their owner.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use platform::db::DbConfig;
use query_api::{AppState, Settings};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use testkit::TestDatabase;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The API under test, serving a database of its own.
pub struct TestApp {
    pub address: SocketAddr,
    pub db: TestDatabase,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

/// A response, read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// A header as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header"))
    }

    /// Asserts a problem+json response with `status`.
    pub fn assert_problem(&self, status: StatusCode) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(self.body["status"], status.as_u16());
        for field in ["type", "title", "detail"] {
            assert!(
                self.body[field].is_string(),
                "{field} missing: {}",
                self.body
            );
        }
    }
}

/// A pool connected as the SELECT-only role, through `url`.
pub fn query_pool(url: &str, acquire_timeout_ms: u64) -> PgPool {
    platform::db::connect_lazy(&DbConfig {
        url: url.to_owned(),
        max_connections: 5,
        acquire_timeout_ms,
    })
    .expect("query pool")
}

impl TestApp {
    /// Default settings, connected as the query role.
    pub async fn spawn() -> Self {
        Self::spawn_with(Settings::default()).await
    }

    /// Custom settings, connected as the query role.
    pub async fn spawn_with(settings: Settings) -> Self {
        let db = TestDatabase::create().await;
        let pool = query_pool(&db.query_url, 3000);
        Self::serve(db, pool, settings).await
    }

    /// Serves the router over `pool` (which may go through a proxy).
    pub async fn serve(db: TestDatabase, pool: PgPool, settings: Settings) -> Self {
        testkit::init_logging();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let app = query_api::router(AppState::new(pool, settings));
        tokio::spawn(platform::http::serve(listener, app, shutdown.clone()));
        Self {
            address,
            db,
            http: http_client(),
            shutdown,
        }
    }

    /// GETs `path_and_query` and reads the JSON body (`null` when empty).
    pub async fn get(&self, path_and_query: &str) -> Reply {
        get(&self.http, self.address, path_and_query).await
    }

    /// Seeds `read.products` as the owner.
    pub async fn insert_product(&self, product: &ProductSeed) {
        seed_product(&self.db.pool, product).await;
    }

    /// Seeds `read.orders` and `read.user_orders` as the owner.
    pub async fn insert_order(&self, order: &OrderSeed) {
        let lines: Vec<Value> = order
            .lines
            .iter()
            .map(|(product_id, quantity, unit_price_cents)| {
                json!({"product_id": product_id, "quantity": quantity,
                       "unit_price_cents": unit_price_cents})
            })
            .collect();
        let total: i64 = order.lines.iter().map(|(_, q, p)| q * p).sum();
        sqlx::query(
            "INSERT INTO read.orders (order_id, user_id, status, reason, lines, total_cents, \
             version, placed_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(order.order_id)
        .bind(&order.user_id)
        .bind(&order.status)
        .bind(&order.reason)
        .bind(Value::Array(lines))
        .bind(total)
        .bind(order.version)
        .bind(order.placed_at)
        .bind(order.updated_at)
        .execute(&self.db.pool)
        .await
        .expect("insert order");
        sqlx::query(
            "INSERT INTO read.user_orders (order_id, user_id, placed_at, version) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(order.order_id)
        .bind(&order.user_id)
        .bind(order.placed_at)
        .bind(order.version)
        .execute(&self.db.pool)
        .await
        .expect("insert user order");
    }

    /// Seeds `read.payments` as the owner.
    pub async fn insert_payment(&self, payment: &PaymentSeed) {
        sqlx::query(
            "INSERT INTO read.payments (payment_id, order_id, status, amount_cents, currency, \
             charge_id, refund_id, decline_code, failure_reason, version, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())",
        )
        .bind(payment.payment_id)
        .bind(payment.order_id)
        .bind(&payment.status)
        .bind(payment.amount_cents)
        .bind(&payment.currency)
        .bind(&payment.charge_id)
        .bind(&payment.refund_id)
        .bind(&payment.decline_code)
        .bind(&payment.failure_reason)
        .bind(payment.version)
        .execute(&self.db.pool)
        .await
        .expect("insert payment");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Seeds `read.products` through the owner's `pool`.
pub async fn seed_product(pool: &PgPool, product: &ProductSeed) {
    sqlx::query(
        "INSERT INTO read.products \
         (product_id, name, price_cents, available, reserved, sold, version, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, now())",
    )
    .bind(product.product_id)
    .bind(&product.name)
    .bind(product.price_cents)
    .bind(product.available)
    .bind(product.reserved)
    .bind(product.sold)
    .bind(product.version)
    .execute(pool)
    .await
    .expect("insert product");
}

/// An HTTP client that never hangs a test forever.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("http client")
}

/// GETs `path_and_query` on `address` and reads the JSON body.
pub async fn get(http: &reqwest::Client, address: SocketAddr, path_and_query: &str) -> Reply {
    let response = http
        .get(format!("http://{address}{path_and_query}"))
        .send()
        .await
        .expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("non-JSON body ({e}): {}", String::from_utf8_lossy(&bytes)))
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// A row of `read.products`.
#[derive(Debug, Clone)]
pub struct ProductSeed {
    pub product_id: Uuid,
    pub name: String,
    pub price_cents: i64,
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
    pub version: i64,
}

impl ProductSeed {
    /// A product named `name` at version 1.
    pub fn named(name: &str) -> Self {
        Self {
            product_id: Uuid::now_v7(),
            name: name.to_owned(),
            price_cents: 1250,
            available: 10,
            reserved: 0,
            sold: 0,
            version: 1,
        }
    }
}

/// A row of `read.orders` (and its `read.user_orders` entry).
#[derive(Debug, Clone)]
pub struct OrderSeed {
    pub order_id: Uuid,
    pub user_id: String,
    pub status: String,
    pub reason: Option<String>,
    /// (product_id, quantity, unit_price_cents)
    pub lines: Vec<(Uuid, i64, i64)>,
    pub version: i64,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OrderSeed {
    /// A pending order of `user_id` placed at `placed_at`, at version 1.
    pub fn of(user_id: &str, placed_at: DateTime<Utc>) -> Self {
        Self {
            order_id: Uuid::now_v7(),
            user_id: user_id.to_owned(),
            status: "PENDING".to_owned(),
            reason: None,
            lines: vec![(Uuid::now_v7(), 2, 1250), (Uuid::now_v7(), 1, 999)],
            version: 1,
            placed_at,
            updated_at: placed_at,
        }
    }
}

/// A row of `read.payments`.
#[derive(Debug, Clone)]
pub struct PaymentSeed {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub status: String,
    pub amount_cents: i64,
    pub currency: String,
    pub charge_id: Option<String>,
    pub refund_id: Option<String>,
    pub decline_code: Option<String>,
    pub failure_reason: Option<String>,
    pub version: i64,
}

impl PaymentSeed {
    /// A requested payment of `amount_cents` EUR for `order_id`, at version 1.
    pub fn requested(order_id: Uuid, amount_cents: i64) -> Self {
        Self {
            payment_id: Uuid::now_v7(),
            order_id,
            status: "REQUESTED".to_owned(),
            amount_cents,
            currency: "EUR".to_owned(),
            charge_id: None,
            refund_id: None,
            decline_code: None,
            failure_reason: None,
            version: 1,
        }
    }
}

/// Now, at the microsecond precision PostgreSQL stores.
pub fn now_micros() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("valid time")
}

/// Parses an RFC 3339 timestamp from a JSON value.
pub fn timestamp(value: &Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}
