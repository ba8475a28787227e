//! Starts the whole system in-process for one test: command API, outbox
//! relay, projector, query API and (optionally) the saga worker with the
//! payment-gateway simulator, on a fresh database and topic prefix.

pub mod processes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eventstore::relay::{Relay, RelayConfig};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use testkit::{TcpProxy, TestDatabase, TestKafka};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How to start the system.
#[derive(Debug, Clone)]
pub struct Options {
    /// Start the saga worker and the payment gateway.
    pub saga: bool,
    /// The saga's payment deadline.
    pub payment_deadline: Duration,
    /// How long the gateway holds `tok_timeout*` / `tok_hang*` answers.
    pub slow_response: Duration,
    /// The payment client's request timeout.
    pub payment_request_timeout: Duration,
    /// Failures that open the payment client's breaker (within its window, and most of its calls).
    pub breaker_failures: u32,
    /// How long the breaker stays open.
    pub breaker_cooldown: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            saga: true,
            payment_deadline: Duration::from_secs(3),
            slow_response: Duration::from_millis(1500),
            payment_request_timeout: Duration::from_millis(400),
            breaker_failures: 3,
            breaker_cooldown: Duration::from_millis(500),
        }
    }
}

/// The running system and HTTP helpers against it.
pub struct System {
    /// The test's database.
    pub db: TestDatabase,
    /// The test's Kafka topics.
    pub kafka: TestKafka,
    /// Base URL of the command API.
    pub command_url: String,
    /// Base URL of the query API.
    pub query_url: String,
    /// Base URL of the payment gateway (direct, not through the proxy).
    pub gateway_url: String,
    /// The proxy between the saga and the gateway (cut it to take the
    /// provider down).
    pub gateway_proxy: Option<TcpProxy>,
    /// An HTTP client.
    pub http: reqwest::Client,
    options: Options,
    shutdown: CancellationToken,
    saga: Option<JoinHandle<()>>,
}

impl System {
    /// Starts every process with the default options.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Starts every process.
    pub async fn start_with(options: Options) -> Self {
        testkit::init_logging();
        let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
        let shutdown = CancellationToken::new();

        let command = command_api::router(command_api::AppState::new(db.pool.clone()));
        let command_addr = serve(command, &shutdown).await;

        let query_pool = platform::db::connect_lazy(&platform::db::DbConfig::new(&db.query_url))
            .expect("query pool");
        let query = query_api::router(query_api::AppState::new(
            query_pool,
            query_api::Settings::default(),
        ));
        let query_addr = serve(query, &shutdown).await;

        let relay_config = RelayConfig {
            poll_interval_ms: 100,
            ..RelayConfig::default()
        };
        let relay = Relay::new(db.pool.clone(), kafka.config.clone(), relay_config).expect("relay");
        let stop = shutdown.clone();
        tokio::spawn(async move { relay.run(stop).await });

        // Group ids are per test, like the topics: a group shared between
        // tests would rebalance across them.
        let consumer = projector::Consumer::new(
            db.pool.clone(),
            &kafka.config,
            projector::ConsumerSettings {
                group_id: format!("{}projector", kafka.config.topic_prefix),
                ..projector::ConsumerSettings::default()
            },
        )
        .expect("projector");
        tokio::spawn(consumer.run(shutdown.clone()));

        let gateway = payment_gateway::router(payment_gateway::AppState::new(
            db.pool.clone(),
            payment_gateway::Behaviour {
                latency: Duration::ZERO,
                failure_rate: 0.0,
                slow_response: options.slow_response,
            },
        ));
        let gateway_addr = serve(gateway, &shutdown).await;
        let mut system = Self {
            db,
            kafka,
            command_url: format!("http://{command_addr}"),
            query_url: format!("http://{query_addr}"),
            gateway_url: format!("http://{gateway_addr}"),
            gateway_proxy: None,
            http: reqwest::Client::new(),
            options: options.clone(),
            shutdown,
            saga: None,
        };
        if options.saga {
            system.gateway_proxy = Some(TcpProxy::start(gateway_addr).await);
            system.start_saga();
        }
        system
    }

    /// Starts a saga worker (consumer + effect runner) in the background.
    pub fn start_saga(&mut self) {
        let proxy = self.gateway_proxy.as_ref().expect("saga enabled");
        let mut provider =
            payment_client::ProviderConfig::new(format!("http://{}", proxy.address()));
        provider.request_timeout_ms = millis(self.options.payment_request_timeout);
        provider.connect_timeout_ms = 300;
        provider.max_attempts = 3;
        provider.backoff_base_ms = 20;
        provider.backoff_max_ms = 100;
        provider.breaker_failures = self.options.breaker_failures;
        provider.breaker_cooldown_ms = millis(self.options.breaker_cooldown);
        let policy = domain::saga::SagaPolicy {
            payment_deadline: chrono::Duration::from_std(self.options.payment_deadline).unwrap(),
            currency: "EUR".into(),
        };
        let pool = self.db.pool.clone();
        let handler = Arc::new(saga::Handler::new(pool.clone(), policy));
        let client = payment_client::HttpPaymentProvider::new(provider).expect("payment client");
        let settings = saga::effects::EffectSettings {
            tick: Duration::from_millis(100),
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_millis(500),
            ..saga::effects::EffectSettings::default()
        };
        let runner = saga::effects::EffectRunner::new(
            pool.clone(),
            handler.clone(),
            Arc::new(client),
            settings,
        );
        let consumer = saga::consumer::SagaConsumer::new(
            pool,
            &self.kafka.config,
            handler,
            saga::consumer::ConsumerSettings {
                group_id: format!("{}saga", self.kafka.config.topic_prefix),
                max_attempts: 3,
                retry_base: Duration::from_millis(20),
                retry_max: Duration::from_millis(200),
                ..saga::consumer::ConsumerSettings::default()
            },
            runner.waker(),
        )
        .expect("saga consumer");
        let stop = self.shutdown.clone();
        self.saga = Some(tokio::spawn(async move {
            let runner = tokio::spawn(runner.run(stop.clone()));
            consumer.run(stop).await;
            runner.abort();
        }));
    }

    /// Starts a real `saga-worker` process (the binary built beside the test
    /// executable by `cargo test --workspace`) configured like
    /// [`Self::start_saga`], sharing its consumer group. Kill it with
    /// [`std::process::Child::kill`] (SIGKILL).
    pub fn spawn_saga_process(&self) -> std::process::Child {
        let binary = std::env::current_exe()
            .ok()
            .and_then(|test| Some(test.parent()?.parent()?.join("saga-worker")))
            .filter(|path| path.exists())
            .expect("the saga-worker binary is built by `cargo test --workspace` (or `cargo build -p saga`)");
        let proxy = self.gateway_proxy.as_ref().expect("saga enabled");
        let prefix = &self.kafka.config.topic_prefix;
        std::process::Command::new(binary)
            .env("DATABASE_URL", &self.db.url)
            .env("KAFKA_BROKERS", &self.kafka.config.brokers)
            .env("KAFKA_TOPIC_PREFIX", prefix)
            .env("SAGA_GROUP_ID", format!("{prefix}saga"))
            .env("ADMIN_BIND", "127.0.0.1:0")
            .env(
                "SAGA_PAYMENT_DEADLINE_MS",
                millis(self.options.payment_deadline).to_string(),
            )
            .env("SAGA_DEAD_LETTER_AFTER", "3")
            .env("SAGA_TICK_MS", "100")
            .env("PAYMENT_GATEWAY_URL", format!("http://{}", proxy.address()))
            .env(
                "PAYMENT_REQUEST_TIMEOUT_MS",
                millis(self.options.payment_request_timeout).to_string(),
            )
            .env("PAYMENT_CONNECT_TIMEOUT_MS", "300")
            .env("PAYMENT_BACKOFF_BASE_MS", "20")
            .env("PAYMENT_BACKOFF_MAX_MS", "100")
            .env(
                "PAYMENT_BREAKER_FAILURES",
                self.options.breaker_failures.to_string(),
            )
            .env(
                "PAYMENT_BREAKER_COOLDOWN_MS",
                millis(self.options.breaker_cooldown).to_string(),
            )
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start saga-worker")
    }

    /// Kills the in-process saga worker abruptly: its tasks are dropped
    /// wherever they are (open transactions roll back, nothing shuts down
    /// gracefully).
    pub async fn kill_saga(&mut self) {
        if let Some(task) = self.saga.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// POSTs JSON to the command API and returns status and body.
    pub async fn command(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.command_url))
            .json(&body)
            .send()
            .await
            .expect("command request");
        read(response).await
    }

    /// GETs from the query API and returns status and body.
    pub async fn query(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.query_url))
            .send()
            .await
            .expect("query request");
        read(response).await
    }

    /// GETs `path?min_version=version` until it answers 200 at that version.
    pub async fn query_at_version(&self, path: &str, version: i64) -> Value {
        self.query_until(path, Duration::from_secs(30), |body| {
            body["version"].as_i64() >= Some(version)
        })
        .await
    }

    /// GETs `path` until `done` holds for the body, or panics after `timeout`.
    pub async fn query_until(
        &self,
        path: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (status, body) = self.query(path).await;
            if status == StatusCode::OK && done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never reached the expected state: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Registers a product and returns its id.
    pub async fn product(&self, name: &str, price_cents: i64, stock: i64) -> String {
        let (status, body) = self
            .command(
                "/products",
                serde_json::json!({"name": name, "price_cents": price_cents, "initial_stock": stock}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["product_id"].as_str().unwrap().to_owned()
    }

    /// Places an order for `lines` (product id, quantity) with `token`;
    /// returns its id.
    pub async fn order(&self, user: &str, lines: &[(&str, i64)], token: &str) -> String {
        let lines: Vec<Value> = lines
            .iter()
            .map(|(product, quantity)| serde_json::json!({"product_id": product, "quantity": quantity}))
            .collect();
        let (status, body) = self
            .command(
                "/orders",
                serde_json::json!({"user_id": user, "lines": lines, "payment": {"token": token}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["order_id"].as_str().unwrap().to_owned()
    }

    /// Waits until the order is in a terminal status and returns it.
    pub async fn terminal_order(&self, order_id: &str, timeout: Duration) -> Value {
        self.query_until(&format!("/orders/{order_id}"), timeout, |order| {
            matches!(
                order["status"].as_str(),
                Some("CONFIRMED" | "REJECTED" | "CANCELLED")
            )
        })
        .await
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.saga.take() {
            task.abort();
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

async fn serve(router: axum::Router, shutdown: &CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(platform::http::serve(listener, router, shutdown.clone()));
    address
}

async fn read(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}
