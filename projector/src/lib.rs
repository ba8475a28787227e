//! The projector: builds the read models (`read.products`, `read.orders`,
//! `read.user_orders`, `read.payments`) from the event topics, exactly once
//! per event, and rebuilds them from the PostgreSQL event log on demand
//! (`projector replay`).
//!
//! - [`projection`]: the read models, each a pure fold over one row per stream;
//! - [`apply`]: the version rule that makes every effect exactly-once, for
//!   batches of events;
//! - [`consumer`]: the live Kafka consumer, in batches;
//! - [`dead_letter`]: parking what cannot be applied (and the rest of its
//!   stream behind it), listing and re-driving it;
//! - [`mod@replay`]: shadow rebuild and atomic swap;
//! - [`config`]: the command line.

#![warn(missing_docs)]

pub mod apply;
pub mod config;
pub mod consumer;
pub mod dead_letter;
mod metrics;
pub mod projection;
pub mod replay;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use apply::{apply_batch, ApplyError, Verdict};
pub use config::{Cli, Command, DeadLetterArgs, DeadLetterCommand, ProjectorConfig, ReplayArgs};
pub use consumer::{consume, project, Consumer, ConsumerSettings, ConsumerStats};
pub use projection::{Projection, Schema};
pub use replay::{replay, ProgressMode, ReplayError, ReplayOptions, ReplaySummary};

/// Runs the live projector until `shutdown`: ensures the topics exist, then
/// consumes them.
pub async fn run(config: ProjectorConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = platform::db::connect_lazy(&config.db).context("invalid database URL")?;
    platform::metrics::start_worker_admin(
        &config.admin,
        platform::metrics::PROJECTOR_ADMIN,
        &pool,
        "projector",
        &shutdown,
    )
    .await?;
    crate::metrics::describe();
    crate::metrics::spawn_samplers(
        pool.clone(),
        config.kafka.event_topics(),
        Duration::from_secs(5),
        shutdown.clone(),
    );
    if !config.kafka.ensure_topics_when_available(&shutdown).await {
        return Ok(());
    }
    consume(pool, &config.kafka, config.consumer_settings(), shutdown)
        .await
        .context("starting the projector")
}

/// Entry point of the binary: the live projector, `replay` or `dead-letters`.
pub async fn main(cli: Cli) -> ExitCode {
    match cli.command {
        None => {
            let _telemetry = platform::telemetry::init("projector", &cli.run.telemetry);
            match run(cli.run, platform::shutdown::on_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "projector failed");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Replay(args)) => run_replay(args).await,
        Some(Command::DeadLetters(args)) => {
            let _telemetry = platform::telemetry::init("projector-dead-letters", &args.telemetry);
            match dead_letter_command(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn dead_letter_command(args: DeadLetterArgs) -> anyhow::Result<()> {
    let pool = platform::db::connect_lazy(&args.db).context("invalid database URL")?;
    match args.command {
        DeadLetterCommand::List { all } => {
            let letters = dead_letter::list(&pool, all)
                .await
                .context("listing dead letters")?;
            if letters.is_empty() {
                println!("no dead letters");
            }
            for letter in letters {
                let known = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
                println!(
                    "#{:<5} {:<9} {}[{}]@{}  stream {} v{}  tried {}x  {}",
                    letter.id,
                    letter.status,
                    letter.topic,
                    letter.partition,
                    letter.offset,
                    known(letter.stream_id.map(|id| id.to_string())),
                    known(letter.stream_version.map(|v| v.to_string())),
                    letter.attempts,
                    letter.reason
                );
            }
        }
        DeadLetterCommand::Show { id } => {
            let letter = dead_letter::show(&pool, id)
                .await
                .context("reading the dead letter")?
                .with_context(|| format!("no dead letter #{id}"))?;
            println!("{}", serde_json::to_string_pretty(&letter)?);
        }
        DeadLetterCommand::Redrive { id, all: _ } => {
            let results = dead_letter::redrive(&pool, id)
                .await
                .context("re-driving dead letters")?;
            if results.is_empty() {
                match id {
                    Some(id) => anyhow::bail!("dead letter #{id} does not exist or is not parked"),
                    None => anyhow::bail!("nothing parked to re-drive"),
                }
            }
            let mut failed = false;
            for result in results {
                match result.outcome {
                    Ok(reapplied) => println!("#{}: re-driven ({reapplied:?})", result.id),
                    Err(error) => {
                        failed = true;
                        println!("#{}: failed again, still parked: {error}", result.id);
                    }
                }
            }
            if failed {
                anyhow::bail!(
                    "some dead letters failed again (they, and the later letters of their streams, stay parked)"
                );
            }
        }
    }
    Ok(())
}

async fn run_replay(args: ReplayArgs) -> ExitCode {
    let _telemetry = platform::telemetry::init("projector-replay", &args.telemetry);
    let pool = match platform::db::connect_lazy(&args.db) {
        Ok(pool) => pool,
        Err(error) => {
            eprintln!("error: invalid database URL: {error}");
            return ExitCode::FAILURE;
        }
    };
    let options = ReplayOptions {
        projections: args.projections,
        batch_size: args.batch_size,
        progress: ProgressMode::Auto,
        cancel: platform::shutdown::on_signal(),
    };
    match replay(&pool, &options).await {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: replay failed: {error}");
            eprintln!("the live read models were not changed");
            ExitCode::FAILURE
        }
    }
}
