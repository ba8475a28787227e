//! The drain: wait until the system is quiet (outbox empty, every order
//! settled in the read model), then audit; audit again while violations
//! remain and the drain budget lasts (a projector still catching up is not a
//! violation yet; a lost event stays lost).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::system::System;
use crate::Args;

/// The audit's verdict.
pub struct Outcome {
    /// The report as printed.
    pub text: String,
    /// Every violation found in the last audit.
    pub violations: Vec<String>,
}

/// Waits for quiet, then audits until clean or `budget` is spent.
pub async fn until_clean(
    args: &Args,
    system: &System,
    answers: &Path,
    budget: Duration,
) -> anyhow::Result<Outcome> {
    let begun = Instant::now();
    while begun.elapsed() < budget && !quiet(system).await {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    loop {
        let outcome = audit(args, system, answers).await?;
        if outcome.violations.is_empty() || begun.elapsed() >= budget {
            return Ok(outcome);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Outbox empty and no order of the log without a settled read-model row.
async fn quiet(system: &System) -> bool {
    let row: Result<(i64, i64), _> = sqlx::query_as(
        "SELECT (SELECT count(*) FROM eventstore.outbox), \
                (SELECT count(*) FROM eventstore.streams s \
                  WHERE s.stream_type = 'order' AND NOT EXISTS ( \
                    SELECT 1 FROM read.orders o WHERE o.order_id = s.stream_id \
                       AND o.status IN ('CONFIRMED', 'REJECTED', 'CANCELLED')))",
    )
    .fetch_one(&system.pool)
    .await;
    matches!(row, Ok((0, 0)))
}

async fn audit(args: &Args, system: &System, answers: &Path) -> anyhow::Result<Outcome> {
    let kafka = platform::kafka::KafkaConfig::new(&args.kafka_brokers, &system.topic_prefix);
    let mut config = audit::AuditConfig::new(&system.database_url, kafka);
    config.answers = Some(answers.to_path_buf());
    let report = audit::run(&config).await?;
    Ok(Outcome {
        text: report.to_string(),
        violations: report
            .violations()
            .iter()
            .map(ToString::to_string)
            .collect(),
    })
}
