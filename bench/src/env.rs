//! A fresh database (migrations applied) and a fresh Kafka topic prefix per
//! stage, removed again when the stage is done, so stages never see each
//! other's data and the suite leaves nothing behind.

use platform::kafka::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

/// A database created for one stage.
pub struct BenchDb {
    /// Its name (`bench_<stage>_<id>`).
    pub name: String,
    /// URL of the application role (what the components use).
    pub url: String,
    /// URL of the SELECT-only query role.
    pub query_url: String,
    /// A pool connected as the application role.
    pub pool: PgPool,
}

impl BenchDb {
    /// Creates `bench_<label>_<id>` and migrates it as the owner role;
    /// `connections` is the pool size.
    pub async fn create(label: &str, connections: u32) -> anyhow::Result<Self> {
        let name = format!(
            "bench_{}_{}",
            label.replace('-', "_"),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let urls = testkit::database::create_database(&name, true).await?;
        let pool = pool(&urls.app, connections).await?;
        Ok(Self {
            query_url: urls.query,
            name,
            url: urls.app,
            pool,
        })
    }

    /// Another pool on this database (e.g. for a component that must not
    /// compete with the load generator for connections).
    pub async fn pool(&self, connections: u32) -> anyhow::Result<PgPool> {
        pool(&self.url, connections).await
    }

    /// Drops the database (closing whatever is still connected).
    pub async fn remove(self) -> anyhow::Result<()> {
        self.pool.close().await;
        testkit::database::drop_database(&self.name).await
    }
}

async fn pool(url: &str, connections: u32) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(connections)
        .connect(url)
        .await?)
}

/// A topic prefix created for one stage.
pub struct BenchKafka {
    /// Brokers and prefix to hand to the components.
    pub config: KafkaConfig,
}

impl BenchKafka {
    /// Creates the event and dead-letter topics under `bench-<id>.`.
    pub async fn create() -> anyhow::Result<Self> {
        let prefix = format!("bench-{}.", Uuid::new_v4().simple());
        let config = KafkaConfig::new(testkit::kafka::brokers(), prefix);
        config.ensure_topics().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot create topics on {}: {e} (run `make infra-up`)",
                config.brokers
            )
        })?;
        Ok(Self { config })
    }

    /// Deletes the topics again.
    pub async fn remove(self) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.config.client_config().create()?;
        let mut topics = self.config.event_topics();
        topics.extend(
            self.config
                .event_topics()
                .iter()
                .map(|t| KafkaConfig::dead_letter_topic(t)),
        );
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        admin.delete_topics(&names, &AdminOptions::new()).await?;
        Ok(())
    }
}
