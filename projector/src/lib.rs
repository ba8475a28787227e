//! The projector: builds the read models (`read.products`, `read.orders`,
//! `read.user_orders`, `read.payments`) from the event topics, exactly once
//! per event, and rebuilds them from the PostgreSQL event log on demand
//! (`projector replay`).
//!
//! - [`projection`]: the read models, each a pure fold over one row per stream;
//! - [`apply`]: the version rule that makes every effect exactly-once, for
//!   batches of events;
//! - [`consumer`]: the live Kafka consumer, in batches;
//! - [`mod@replay`]: shadow rebuild and atomic swap;
//! - [`config`]: the command line.

#![warn(missing_docs)]

pub mod apply;
pub mod config;
pub mod consumer;
mod metrics;
pub mod projection;
pub mod replay;

use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use apply::{apply_batch, ApplyError, Verdict};
pub use config::{Cli, Command, ProjectorConfig, ReplayArgs};
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
    if !config.kafka.ensure_topics_when_available(&shutdown).await {
        return Ok(());
    }
    consume(pool, &config.kafka, config.consumer_settings(), shutdown)
        .await
        .context("starting the projector")
}

/// Entry point of the binary: the live projector or `replay`.
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
    }
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
