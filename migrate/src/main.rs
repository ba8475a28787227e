//! `migrate`: applies the schema migrations as the owner role.
//!
//! Its own one-shot process, run before the services start (`make run`,
//! `make demo`, `make migrate`): the services connect as the application
//! role, which may not change the schema, and only check at start-up that
//! it is current (`platform::db::ensure_migrated`).

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use platform::telemetry::TelemetryConfig;
use sqlx::postgres::PgPoolOptions;

/// Applies every pending migration of the event log, outbox, bookkeeping,
/// read models and roles to the database, as its owner role. Idempotent;
/// safe to run while another `migrate` runs (they take turns).
#[derive(Debug, Parser)]
#[command(name = "migrate", version)]
struct Config {
    /// PostgreSQL URL of the owner role (not the application role `orders`).
    #[arg(
        long = "database-url",
        env = "OWNER_DATABASE_URL",
        default_value = platform::db::DEFAULT_OWNER_DATABASE_URL
    )]
    url: String,
    /// How long to wait for the database to accept the connection (s).
    #[arg(long, env = "MIGRATE_CONNECT_TIMEOUT_SECS", default_value_t = 10)]
    connect_timeout_secs: u64,
    #[command(flatten)]
    telemetry: TelemetryConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = platform::telemetry::init("migrate", &config.telemetry);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(config.connect_timeout_secs))
        .connect(&config.url)
        .await
        .with_context(|| format!("connecting to {} as the owner role", redact(&config.url)))?;
    platform::db::migrate(&pool)
        .await
        .with_context(|| format!("applying the migrations to {}", redact(&config.url)))?;
    platform::db::ensure_migrated(&pool).await?;
    let latest = platform::db::MIGRATOR.iter().map(|m| m.version).max();
    tracing::info!(
        database = %redact(&config.url),
        latest = ?latest,
        "schema migrated"
    );
    println!(
        "migrate: {} is at migration {}",
        redact(&config.url),
        latest.unwrap_or_default()
    );
    pool.close().await;
    Ok(())
}

/// `url` without its password.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, rest)), Some((_, host))) => {
            let user = rest.split(['@', ':']).next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redact("postgres://orders_owner:secret@127.0.0.1:5432/orders"),
            "postgres://orders_owner@127.0.0.1:5432/orders"
        );
        assert_eq!(redact("postgres://h/d"), "postgres://h/d");
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }
}
