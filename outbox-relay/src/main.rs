//! `outbox-relay`: publishes the event log's outbox to Kafka.
//!
//! Run several for availability: one holds the leader lock and publishes,
//! the others wait as hot standbys and take over within about a second of
//! its death, or once its lease expires if it stops without dying
//! (`RELAY_LEADER_LEASE_MS`, renewed every `RELAY_LEADER_HEARTBEAT_MS`).

use anyhow::Context;
use clap::Parser;
use eventstore::relay::{Relay, RelayConfig};
use platform::db::DbConfig;
use platform::kafka::KafkaConfig;
use platform::metrics::AdminConfig;
use platform::telemetry::TelemetryConfig;

/// Relays events from the PostgreSQL outbox to Kafka (one topic per stream
/// type, key = stream id, the envelope as JSON value, ids as headers),
/// in order, at least once, never skipping an event.
#[derive(Debug, Parser)]
#[command(name = "outbox-relay", version)]
struct Config {
    #[command(flatten)]
    db: DbConfig,
    #[command(flatten)]
    kafka: KafkaConfig,
    #[command(flatten)]
    relay: RelayConfig,
    #[command(flatten)]
    admin: AdminConfig,
    #[command(flatten)]
    telemetry: TelemetryConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = platform::telemetry::init("outbox-relay", &config.telemetry);
    let pool = platform::db::connect_lazy(&config.db).context("configuring the database pool")?;
    let shutdown = platform::shutdown::on_signal();
    platform::metrics::start_worker_admin(
        &config.admin,
        platform::metrics::RELAY_ADMIN,
        &pool,
        "relay",
        &shutdown,
    )
    .await?;
    eventstore::metrics::spawn_outbox_sampler(
        pool.clone(),
        std::time::Duration::from_secs(2),
        shutdown.clone(),
    );
    if !config.kafka.ensure_topics_when_available(&shutdown).await {
        return Ok(());
    }
    let relay = Relay::new(pool, config.kafka, config.relay).context("starting the relay")?;
    relay.run(shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Config;

    #[test]
    fn the_command_line_is_well_formed() {
        Config::command().debug_assert();
    }
}
