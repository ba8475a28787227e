//! Starts the system's components in this process, each through its public
//! entry point and configured like its binary, on a stage's database and
//! topic prefix. Every component stops when [`Services`] is stopped or dropped.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use eventstore::relay::{Relay, RelayConfig};
use platform::kafka::KafkaConfig;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::env::BenchDb;

/// The components one stage started.
#[derive(Default)]
pub struct Services {
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Services {
    /// No components yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The command API over `pool`; returns its base URL.
    pub async fn command_api(&mut self, pool: PgPool) -> anyhow::Result<String> {
        let router = command_api::router(command_api::AppState::new(pool));
        self.serve(router).await
    }

    /// The query API as the SELECT-only role, like the binary; returns its base URL.
    pub async fn query_api(&mut self, db: &BenchDb) -> anyhow::Result<String> {
        let config =
            query_api::Config::try_parse_from(["query-api", "--database-url", &db.query_url])?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            if let Err(error) = query_api::run_on(listener, config, shutdown).await {
                eprintln!("query API failed: {error:#}");
            }
        });
        Ok(url)
    }

    /// The outbox relay (relay defaults).
    pub fn relay(&mut self, pool: PgPool, kafka: &KafkaConfig) -> anyhow::Result<()> {
        let relay = Relay::new(pool, kafka.clone(), RelayConfig::default())
            .context("creating the relay")?;
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move { relay.run(shutdown).await });
        Ok(())
    }

    /// The live projector in consumer group `group`.
    pub fn projector(
        &mut self,
        db: &BenchDb,
        kafka: &KafkaConfig,
        group: &str,
    ) -> anyhow::Result<()> {
        let mut args = vec![
            "projector".to_owned(),
            "--database-url".into(),
            db.url.clone(),
            "--group-id".into(),
            group.into(),
        ];
        args.extend(kafka_args(kafka));
        let cli = projector::Cli::try_parse_from(args)?;
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            if let Err(error) = projector::run(cli.run, shutdown).await {
                eprintln!("projector failed: {error:#}");
            }
        });
        Ok(())
    }

    /// The payment-gateway simulator (no added latency, no failures) and a
    /// saga worker calling it.
    pub async fn saga(&mut self, db: &BenchDb, kafka: &KafkaConfig) -> anyhow::Result<()> {
        let behaviour = payment_gateway::Behaviour {
            latency: Duration::ZERO,
            failure_rate: 0.0,
            slow_response: Duration::from_secs(4),
        };
        let gateway =
            payment_gateway::router(payment_gateway::AppState::new(db.pool(4).await?, behaviour));
        let gateway_url = self.serve(gateway).await?;
        let mut args = vec![
            "saga-worker".to_owned(),
            "--database-url".into(),
            db.url.clone(),
            "--group-id".into(),
            format!("{}saga", kafka.topic_prefix),
            "--payment-gateway-url".into(),
            gateway_url,
        ];
        args.extend(kafka_args(kafka));
        let cli = saga::Cli::try_parse_from(args)?;
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            if let Err(error) = saga::run(cli.run, shutdown).await {
                eprintln!("saga worker failed: {error:#}");
            }
        });
        Ok(())
    }

    /// Stops every component and waits (briefly) until they have.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let tasks = &mut self.tasks;
        let stopped = tokio::time::timeout(Duration::from_secs(15), async move {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if stopped.is_err() {
            self.tasks.abort_all();
        }
    }

    async fn serve(&mut self, router: axum::Router) -> anyhow::Result<String> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            if let Err(error) = platform::http::serve(listener, router, shutdown).await {
                eprintln!("HTTP server failed: {error:#}");
            }
        });
        Ok(url)
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The command-line flags that point a component at `kafka`.
fn kafka_args(kafka: &KafkaConfig) -> Vec<String> {
    vec![
        "--kafka-brokers".into(),
        kafka.brokers.clone(),
        "--kafka-topic-prefix".into(),
        kafka.topic_prefix.clone(),
    ]
}
