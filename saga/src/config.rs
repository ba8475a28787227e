//! Command line of `saga-worker`.

use std::time::Duration;

use domain::saga::SagaPolicy;
use payment_client::ProviderConfig;
use platform::db::DbConfig;
use platform::kafka::KafkaConfig;
use platform::telemetry::TelemetryConfig;

use crate::consumer::ConsumerSettings;
use crate::effects::EffectSettings;
use crate::retention::RetentionSettings;

/// Runs the order saga: reserves stock, takes payment through the payment
/// provider, confirms or compensates. Without a subcommand it consumes the
/// event topics until stopped.
#[derive(Debug, clap::Parser)]
#[command(name = "saga-worker", version)]
pub struct Cli {
    /// What to do (default: run the worker).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Worker settings.
    #[command(flatten)]
    pub run: WorkerConfig,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Inspect and re-drive messages the worker gave up on.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
}

pub use platform::dead_letter::DeadLetterCommand;

/// Settings of the worker.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerConfig {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DbConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kafka: KafkaConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub payment: ProviderConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub telemetry: TelemetryConfig,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub admin: platform::metrics::AdminConfig,
    /// Kafka consumer group; instances in one group split the partitions.
    #[arg(long, env = "SAGA_GROUP_ID", default_value = "saga")]
    pub group_id: String,
    /// How long a payment may stay unknown before the saga asks the
    /// provider what became of it (ms).
    #[arg(long, env = "SAGA_PAYMENT_DEADLINE_MS", default_value_t = 30_000)]
    pub payment_deadline_ms: u64,
    /// Currency of every charge.
    #[arg(long, env = "SAGA_CURRENCY", default_value = "EUR")]
    pub currency: String,
    /// Attempts at a message before it goes to the dead-letter queue.
    #[arg(long, env = "SAGA_DEAD_LETTER_AFTER", default_value_t = 5)]
    pub dead_letter_after: u32,
    /// How often the effect runner looks for due calls and deadlines (ms).
    #[arg(long, env = "SAGA_TICK_MS", default_value_t = 250)]
    pub tick_ms: u64,
    /// Lanes of the consumer: orders handled concurrently (each order's
    /// events in order, in one lane).
    #[arg(long, env = "SAGA_LANES", default_value_t = ConsumerSettings::default().lanes)]
    pub lanes: usize,
    /// Queued events a lane handles in one transaction at most.
    #[arg(long, env = "SAGA_BATCH_SIZE", default_value_t = ConsumerSettings::default().batch_size)]
    pub batch_size: usize,
    /// Seconds between steps of the processed-event pruner (a checkpoint,
    /// then, once the group is past it, a prune: rows go at most every two
    /// steps). 0 turns pruning off.
    #[arg(long, env = "SAGA_DEDUP_PRUNE_INTERVAL_SECS", default_value_t = 300)]
    pub dedup_prune_interval_secs: u64,
    /// Seconds a processed-event row is kept at least, whatever the offsets say.
    #[arg(long, env = "SAGA_DEDUP_RETENTION_SECS", default_value_t = 3600)]
    pub dedup_retention_secs: u64,
}

/// Connections the worker's pool needs at least: one per lane, and a few
/// for the effect runner and the dead-letter checks.
pub fn pool_size(configured: u32, settings: &ConsumerSettings) -> u32 {
    let lanes = u32::try_from(settings.lanes).unwrap_or(u32::MAX);
    configured.max(lanes.saturating_add(4))
}

impl WorkerConfig {
    /// The saga's decision settings.
    pub fn policy(&self) -> SagaPolicy {
        SagaPolicy {
            payment_deadline: chrono::Duration::milliseconds(
                i64::try_from(self.payment_deadline_ms).unwrap_or(i64::MAX),
            ),
            currency: self.currency.clone(),
        }
    }

    /// The consumer's settings.
    pub fn consumer_settings(&self) -> ConsumerSettings {
        ConsumerSettings {
            group_id: self.group_id.clone(),
            max_attempts: self.dead_letter_after,
            lanes: self.lanes,
            batch_size: self.batch_size,
            ..ConsumerSettings::default()
        }
    }

    /// The processed-event pruner's settings; `None` when pruning is off.
    pub fn retention_settings(&self) -> Option<RetentionSettings> {
        (self.dedup_prune_interval_secs > 0).then(|| RetentionSettings {
            interval: Duration::from_secs(self.dedup_prune_interval_secs),
            margin: Duration::from_secs(self.dedup_retention_secs),
            ..RetentionSettings::default()
        })
    }

    /// The effect runner's settings.
    pub fn effect_settings(&self) -> EffectSettings {
        EffectSettings {
            tick: Duration::from_millis(self.tick_ms),
            ..EffectSettings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_command_line_is_well_formed_and_has_defaults() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["saga-worker"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(
            cli.run.policy().payment_deadline,
            chrono::Duration::seconds(30)
        );
        assert_eq!(cli.run.consumer_settings().max_attempts, 5);
        assert_eq!(cli.run.consumer_settings().lanes, 8);
        let retention = cli
            .run
            .retention_settings()
            .expect("pruning is on by default");
        assert_eq!(retention.interval, Duration::from_secs(300));
        assert_eq!(retention.margin, Duration::from_secs(3600));
        let off = Cli::try_parse_from(["saga-worker", "--dedup-prune-interval-secs", "0"]).unwrap();
        assert!(off.run.retention_settings().is_none());
        let cli =
            Cli::try_parse_from(["saga-worker", "--lanes", "2", "--batch-size", "4"]).unwrap();
        let settings = cli.run.consumer_settings();
        assert_eq!((settings.lanes, settings.batch_size), (2, 4));
        assert_eq!(pool_size(10, &settings), 10);
        assert_eq!(
            pool_size(
                10,
                &ConsumerSettings {
                    lanes: 16,
                    ..settings
                }
            ),
            20
        );
        let cli = Cli::try_parse_from(["saga-worker", "dead-letters", "redrive", "--all"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::DeadLetters(DeadLetterCommand::Redrive {
                id: None,
                all: true
            }))
        ));
        assert!(Cli::try_parse_from(["saga-worker", "dead-letters", "redrive"]).is_err());
    }
}
