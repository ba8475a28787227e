//! The suite: raw baselines, then each stage of the system, each isolated on
//! its own database and topic prefix. A failing stage is recorded and the
//! suite goes on; the run then exits non-zero.

mod baseline_copy;
mod baseline_kafka;
mod baseline_tx;
mod baseline_upsert;
mod commands;
mod growth;
mod hot_stream;
mod projector;
mod query;
mod relay;
mod replay;
mod saga;

use std::time::Instant;

use crate::config::Sizes;
use crate::env::BenchDb;
use crate::generate::{generate, GeneratedLog, LogSpec};
use crate::results::Results;

/// The generated log shared by the COPY baseline, replay and growth stages.
pub struct LogFixture {
    /// Its database.
    pub db: BenchDb,
    /// What is in it.
    pub log: GeneratedLog,
}

/// State of one run of the suite.
pub struct Suite {
    /// Sizes asked for.
    pub sizes: Sizes,
    /// Figures so far.
    pub results: Results,
    log: Option<LogFixture>,
}

impl Suite {
    /// An empty run.
    pub fn new(sizes: Sizes) -> Self {
        Self {
            sizes,
            results: Results::default(),
            log: None,
        }
    }

    /// Runs `stages` in order.
    pub async fn run(&mut self, stages: &[&str]) {
        for stage in stages {
            eprintln!("▸ {stage}");
            let started = Instant::now();
            let outcome = self.run_stage(stage).await;
            match outcome {
                Ok(()) => eprintln!("  {stage} done in {:.1?}", started.elapsed()),
                Err(error) => {
                    eprintln!("  {stage} FAILED: {error:#}");
                    self.results
                        .failures
                        .push((stage.to_string(), format!("{error:#}")));
                }
            }
        }
        if let Some(fixture) = self.log.take() {
            if let Err(error) = fixture.db.remove().await {
                eprintln!("cannot drop the generated log's database: {error:#}");
            }
        }
    }

    async fn run_stage(&mut self, stage: &str) -> anyhow::Result<()> {
        match stage {
            "baseline-tx" => baseline_tx::run(self).await,
            "baseline-kafka" => baseline_kafka::run(self).await,
            "baseline-upsert" => baseline_upsert::run(self).await,
            "baseline-copy" => baseline_copy::run(self).await,
            "commands" => commands::run(self).await,
            "hot-stream" => hot_stream::run(self).await,
            "relay" => relay::run(self).await,
            "projector" => projector::run(self).await,
            "query" => query::run(self).await,
            "saga" => saga::run(self).await,
            "replay" => replay::run(self).await,
            "growth" => growth::run(self).await,
            other => anyhow::bail!("no stage {other}"),
        }
    }

    /// The big generated log, generated on first use.
    pub async fn log(&mut self) -> anyhow::Result<&LogFixture> {
        if self.log.is_none() {
            let fixture = generated_log("log", self.sizes.log_events).await?;
            self.results.add(
                "log",
                format!(
                    "generate {} events (through eventstore::append)",
                    fixture.log.events
                ),
                crate::results::Value::rate(
                    crate::load::rate(fixture.log.events, fixture.log.elapsed),
                    "events/s",
                ),
            );
            self.log = Some(fixture);
        }
        Ok(self.log.as_ref().expect("just generated"))
    }
}

/// A fresh database holding a generated log of about `events` events.
pub async fn generated_log(label: &str, events: usize) -> anyhow::Result<LogFixture> {
    let db = BenchDb::create(label, 8).await?;
    eprintln!("  generating a log of {events} events");
    let log = generate(&db.pool, &LogSpec::new(events)).await?;
    eprintln!(
        "  generated {} events ({} orders) in {:.1?}",
        log.events,
        log.orders.len(),
        log.elapsed
    );
    Ok(LogFixture { db, log })
}
