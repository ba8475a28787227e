//! Command-line and environment configuration of the `projector` binary.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use platform::db::DbConfig;
use platform::kafka::KafkaConfig;
use platform::metrics::AdminConfig;
use platform::telemetry::TelemetryConfig;

use crate::consumer::ConsumerSettings;

/// Builds the read models (products, orders, orders per user, payments) from the event topics.
///
/// Without a subcommand, runs the live projector: a Kafka consumer that applies
/// every event exactly once to the read models in PostgreSQL. Run several
/// instances with the same group id to share the partitions.
#[derive(Debug, Parser)]
#[command(name = "projector", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; the live projector if omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the live projector.
    #[command(flatten)]
    pub run: ProjectorConfig,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Rebuild read models from the PostgreSQL event log, then swap them in atomically.
    ///
    /// Reads the event log (the source of truth, never Kafka) into shadow tables
    /// in the schema `read_replay`, then replaces the live tables in `read` in one
    /// short transaction. Safe while the system runs: queries and the live
    /// projector keep working, wait only for the brief swap, and never see a
    /// half-built model; events appended meanwhile are included, and the live
    /// projector carries on afterwards without applying anything twice. Only one
    /// replay runs at a time. On failure the live read models are left untouched.
    Replay(ReplayArgs),
    /// Inspect and re-drive messages the projector parked as dead letters.
    ///
    /// An event the projector cannot decode or apply (after
    /// --max-attempts tries), or a message that is not an event, is parked in
    /// `projector.dead_letters` and copied to `<topic>.dlq`; the later events
    /// of its stream are parked behind it. Re-driving applies a stream's
    /// parked events oldest first from the event log.
    DeadLetters(DeadLetterArgs),
}

/// Options of `projector dead-letters`.
#[derive(Debug, Clone, Args)]
pub struct DeadLetterArgs {
    /// PostgreSQL connection.
    #[command(flatten)]
    pub db: DbConfig,
    /// Logging.
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    /// What to do.
    #[command(subcommand)]
    pub command: DeadLetterCommand,
}

pub use platform::dead_letter::DeadLetterCommand;

/// Options of the live projector.
#[derive(Debug, Clone, Args)]
pub struct ProjectorConfig {
    /// PostgreSQL connection.
    #[command(flatten)]
    pub db: DbConfig,
    /// Kafka connection and topics.
    #[command(flatten)]
    pub kafka: KafkaConfig,
    /// Logging.
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    /// Where `/metrics` and the health probes are served.
    #[command(flatten)]
    pub admin: AdminConfig,
    /// Kafka consumer group of the projector instances.
    #[arg(long, env = "PROJECTOR_GROUP_ID", default_value = "projector")]
    pub group_id: String,
    /// Longest wait between retries of an event whose transaction failed (ms).
    #[arg(long, env = "PROJECTOR_MAX_RETRY_BACKOFF_MS", default_value_t = 10_000)]
    pub max_retry_backoff_ms: u64,
    /// Most Kafka messages applied in one batch (one transaction per partition).
    #[arg(long, env = "PROJECTOR_BATCH_MAX_MESSAGES", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_max_messages: u64,
    /// How long a batch waits for more messages once it has one (ms).
    #[arg(long, env = "PROJECTOR_BATCH_LINGER_MS", default_value_t = 2)]
    pub batch_linger_ms: u64,
    /// Tries at an event that cannot be decoded or applied before it is
    /// parked as a dead letter (database failures are retried without limit).
    #[arg(long, env = "PROJECTOR_MAX_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
}

impl ProjectorConfig {
    /// The consumer settings these options describe.
    pub fn consumer_settings(&self) -> ConsumerSettings {
        ConsumerSettings {
            group_id: self.group_id.clone(),
            retry_max_backoff: Duration::from_millis(self.max_retry_backoff_ms.max(1)),
            batch_max_messages: usize::try_from(self.batch_max_messages).unwrap_or(usize::MAX),
            batch_linger: Duration::from_millis(self.batch_linger_ms),
            max_attempts: self.max_attempts,
            ..ConsumerSettings::default()
        }
    }
}

/// Options of `projector replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// PostgreSQL connection.
    #[command(flatten)]
    pub db: DbConfig,
    /// Logging.
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    /// Projection to rebuild; repeat for several (default: all).
    #[arg(
        long = "projection",
        value_name = "NAME",
        env = "REPLAY_PROJECTIONS",
        value_delimiter = ',',
        value_parser = ["products", "orders", "user_orders", "payments"],
    )]
    pub projections: Vec<String>,
    /// Events per chunk handed from the log reader to the in-memory fold.
    #[arg(
        long,
        env = "REPLAY_BATCH_SIZE",
        default_value_t = 1000,
        value_parser = clap::value_parser!(i64).range(1..)
    )]
    pub batch_size: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn replay_accepts_projections_and_batch_size() {
        let cli = Cli::try_parse_from([
            "projector",
            "replay",
            "--projection",
            "products",
            "--projection",
            "orders",
            "--batch-size",
            "50",
        ])
        .unwrap();
        let Some(Command::Replay(args)) = cli.command else {
            panic!("expected replay");
        };
        assert_eq!(args.projections, ["products", "orders"]);
        assert_eq!(args.batch_size, 50);
        assert!(Cli::try_parse_from(["projector", "replay", "--projection", "nope"]).is_err());
        assert!(Cli::try_parse_from(["projector", "replay", "--batch-size", "0"]).is_err());
    }

    #[test]
    fn dead_letter_subcommands_parse() {
        let command = |args: &[&str]| {
            let cli = Cli::try_parse_from(["projector", "dead-letters"].iter().chain(args))?;
            let Some(Command::DeadLetters(args)) = cli.command else {
                panic!("expected dead-letters");
            };
            Ok::<_, clap::Error>(args.command)
        };
        assert_eq!(
            command(&["list"]).unwrap(),
            DeadLetterCommand::List { all: false }
        );
        assert_eq!(
            command(&["list", "--all"]).unwrap(),
            DeadLetterCommand::List { all: true }
        );
        assert_eq!(
            command(&["show", "7"]).unwrap(),
            DeadLetterCommand::Show { id: 7 }
        );
        assert_eq!(
            command(&["redrive", "7"]).unwrap(),
            DeadLetterCommand::Redrive {
                id: Some(7),
                all: false
            }
        );
        assert_eq!(
            command(&["redrive", "--all"]).unwrap(),
            DeadLetterCommand::Redrive {
                id: None,
                all: true
            }
        );
        assert!(command(&["redrive"]).is_err(), "an id or --all");
        assert!(command(&["redrive", "7", "--all"]).is_err(), "not both");
        assert!(command(&["show"]).is_err());
        assert!(command(&["show", "seven"]).is_err());
        assert!(command(&["purge"]).is_err());
    }

    #[test]
    fn max_attempts_has_a_default_and_must_be_positive() {
        let cli = Cli::try_parse_from(["projector"]).unwrap();
        assert_eq!(cli.run.consumer_settings().max_attempts, 3);
        let cli = Cli::try_parse_from(["projector", "--max-attempts", "5"]).unwrap();
        assert_eq!(cli.run.consumer_settings().max_attempts, 5);
        assert!(Cli::try_parse_from(["projector", "--max-attempts", "0"]).is_err());
    }

    #[test]
    fn projection_names_match_the_projections() {
        let cli = Cli::command();
        let replay = cli.find_subcommand("replay").unwrap();
        let arg = replay
            .get_arguments()
            .find(|a| a.get_id() == "projections")
            .unwrap();
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|v| v.get_name().to_owned())
            .collect();
        assert_eq!(values, crate::projection::names());
    }
}
