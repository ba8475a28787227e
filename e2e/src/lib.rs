//! Starts the whole system in-process for one test: command API, outbox
//! relay, projector and query API, on a fresh database and topic prefix.

use std::net::SocketAddr;
use std::time::Duration;

use eventstore::relay::{Relay, RelayConfig};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use testkit::{TestDatabase, TestKafka};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    /// An HTTP client.
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

impl System {
    /// Starts every process on a fresh database and topic prefix.
    pub async fn start() -> Self {
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

        let consumer = projector::Consumer::new(
            db.pool.clone(),
            &kafka.config,
            projector::ConsumerSettings::default(),
        )
        .expect("projector");
        tokio::spawn(consumer.run(shutdown.clone()));

        Self {
            db,
            kafka,
            command_url: format!("http://{command_addr}"),
            query_url: format!("http://{query_addr}"),
            http: reqwest::Client::new(),
            shutdown,
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
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.query(&format!("{path}?min_version={version}")).await;
            if status == StatusCode::OK && body["version"].as_i64() >= Some(version) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never reached version {version}: {status} {body}"
            );
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
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
