//! The order saga worker.
//!
//! - [`handler`]: one event in, one transaction out — dedup by event id, the
//!   pure saga's reaction ([`domain::saga::react`]), its actions appended
//!   through the same append path as the command API ([`execute`]);
//! - [`steps`]: the pure bookkeeping around the saga (what needs work, the
//!   order actions run in, the commands they become), shared with the
//!   seeded simulator in `tests/simulation.rs`;
//! - [`effects`]: the provider calls the saga asks for, run outside any
//!   transaction, with deadlines kept in the database;
//! - [`consumer`]: the Kafka loop, spreading orders over concurrent
//!   [`lane`]s that commit in batches, storing offsets as [`offsets`] allows;
//! - [`dead_letter`]: parking, listing and re-driving dead letters;
//! - [`retention`]: pruning the dedup rows no copy of an event can need.

#![warn(missing_docs)]

pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod effects;
pub mod execute;
pub mod handler;
pub mod lane;
pub mod metrics;
pub mod offsets;
pub mod retention;
pub mod routing;
pub mod steps;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use config::{Cli, Command, WorkerConfig};
pub use handler::{Handler, HandlerError};

/// Runs the saga worker until `shutdown`: the Kafka consumer and the
/// effect runner side by side.
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = config.consumer_settings();
    let mut db = config.db.clone();
    db.max_connections = config::pool_size(db.max_connections, &settings);
    let pool = platform::db::connect_lazy(&db).context("invalid database URL")?;
    platform::metrics::start_worker_admin(
        &config.admin,
        platform::metrics::SAGA_ADMIN,
        &pool,
        "saga",
        &shutdown,
    )
    .await?;
    crate::metrics::spawn_samplers(pool.clone(), Duration::from_secs(5), shutdown.clone());
    if !config.kafka.ensure_topics_when_available(&shutdown).await {
        return Ok(());
    }
    let provider = payment_client::HttpPaymentProvider::new(config.payment.clone())
        .context("configuring the payment client")?;
    let handler = Arc::new(Handler::new(pool.clone(), config.policy()));
    let runner = effects::EffectRunner::new(
        pool.clone(),
        handler.clone(),
        Arc::new(provider),
        config.effect_settings(),
    );
    let wake = runner.waker();
    if let Some(retention) = config.retention_settings() {
        let progress = retention::GroupProgress::new(
            &config.kafka,
            &settings.group_id,
            config.kafka.event_topics(),
        )
        .context("creating the retention pruner's Kafka client")?;
        let pruner = retention::DedupPruner::new(pool.clone(), progress, retention);
        tokio::spawn(pruner.run(shutdown.clone()));
    }
    let consumer = consumer::SagaConsumer::new(pool, &config.kafka, handler, settings, wake)
        .context("creating the Kafka consumer")?;
    let runner_task = tokio::spawn(runner.run(shutdown.clone()));
    consumer.run(shutdown).await;
    runner_task.await.context("effect runner panicked")?;
    Ok(())
}

/// Entry point of the binary: the worker, or a dead-letter command.
pub async fn main(cli: Cli) -> std::process::ExitCode {
    use std::process::ExitCode;
    let _telemetry = platform::telemetry::init("saga-worker", &cli.run.telemetry);
    let outcome = match cli.command {
        None => run(cli.run, platform::shutdown::on_signal()).await,
        Some(Command::DeadLetters(command)) => dead_letter_command(cli.run, command).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dead_letter_command(
    config: WorkerConfig,
    command: config::DeadLetterCommand,
) -> anyhow::Result<()> {
    use config::DeadLetterCommand;
    let pool = platform::db::connect_lazy(&config.db).context("invalid database URL")?;
    match command {
        DeadLetterCommand::List { all } => {
            let letters = dead_letter::list(&pool, all)
                .await
                .context("listing dead letters")?;
            if letters.is_empty() {
                println!("no dead letters");
            }
            for letter in letters {
                println!(
                    "#{:<5} {:<9} {}[{}]@{}  order {}  tried {}x  {}",
                    letter.id,
                    letter.status,
                    letter.topic,
                    letter.partition,
                    letter.offset,
                    letter
                        .order_id
                        .map_or_else(|| "-".to_owned(), |id| id.to_string()),
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
            let handler = Handler::new(pool.clone(), config.policy());
            let results = dead_letter::redrive(&pool, &handler, id)
                .await
                .context("re-driving dead letters")?;
            if results.is_empty() {
                anyhow::bail!("nothing parked to re-drive");
            }
            let mut failed = false;
            for result in results {
                match result.outcome {
                    Ok(handled) => println!("#{}: re-driven ({handled:?})", result.id),
                    Err(error) => {
                        failed = true;
                        println!("#{}: failed again, still parked: {error}", result.id);
                    }
                }
            }
            if failed {
                anyhow::bail!("some dead letters failed again");
            }
            println!(
                "(the effect runner of a running worker makes any payment calls these set up)"
            );
        }
    }
    Ok(())
}
