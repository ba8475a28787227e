//! The end-to-end auditor: run against a quiet system (after a chaos run, or
//! by an operator), it checks what every part of the system holds against
//! the PostgreSQL event log, the source of truth, and reports counts and
//! every violation.
//!
//! The checks, each a module:
//! - [`kafka`]: every logged event is on its topic (lost, reordered within a
//!   stream, duplicates counted, phantoms and mismatches);
//! - [`read_models`]: every read-model row equals a fresh fold of the log
//!   (the domain aggregates' own `evolve`, not the projector's code);
//! - [`stock`]: stock conservation per product, never negative;
//! - [`orders`]: every order terminal, counted by status and reason;
//! - [`ledger`]: the payment-gateway simulator's ledger against the orders'
//!   outcomes (one capture per confirmed order, refunds, no double charge);
//! - [`answers`]: every `Idempotency-Key` answered one way, and as recorded.
//!
//! Every database read happens in one read-only repeatable-read transaction
//! (one snapshot); Kafka is read up to the high watermarks taken after it.

#![warn(missing_docs)]

pub mod answers;
pub mod fold;
pub mod kafka;
pub mod ledger;
pub mod log;
pub mod orders;
pub mod read_models;
pub mod report;
pub mod stock;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use platform::db::DbConfig;
use platform::kafka::KafkaConfig;

pub use report::{AuditReport, Check, Timings, Violation};

/// What to audit and how.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "audit",
    about = "Checks a quiet system against its event log: Kafka topics, read models, stock, \
             orders, the payment ledger and Idempotency-Key answers. Exits 1 on any violation."
)]
pub struct AuditConfig {
    /// The database holding the event log, read models, saga and ledger.
    #[command(flatten)]
    pub db: DbConfig,
    /// The Kafka brokers and topic prefix the system uses.
    #[command(flatten)]
    pub kafka: KafkaConfig,
    /// JSON lines of the HTTP answers a workload got, one per answer:
    /// `{"key","method","path","status","body"}`. Without it the
    /// idempotency check is skipped.
    #[arg(long, env = "AUDIT_ANSWERS")]
    pub answers: Option<PathBuf>,
    /// Give up reading Kafka after this long without a message while some
    /// partition is still short of its high watermark (ms).
    #[arg(long, env = "AUDIT_KAFKA_TIMEOUT_MS", default_value_t = 30_000)]
    pub kafka_timeout_ms: u64,
    /// Violations printed at most (all are counted and returned).
    #[arg(long, env = "AUDIT_MAX_PRINTED", default_value_t = 50)]
    pub max_printed: usize,
}

impl AuditConfig {
    /// A configuration for `database_url` and `kafka`, no answers file.
    pub fn new(database_url: impl Into<String>, kafka: KafkaConfig) -> Self {
        Self {
            db: DbConfig::new(database_url),
            kafka,
            answers: None,
            kafka_timeout_ms: 30_000,
            max_printed: 50,
        }
    }
}

/// Runs every check. `Err` only when something could not be read (the
/// database or Kafka unreachable, an unreadable answers file); what is wrong
/// with the system is in the report's [`AuditReport::violations`].
pub async fn run(config: &AuditConfig) -> anyhow::Result<AuditReport> {
    let mut timings = Timings::default();
    let started = Instant::now();
    let pool = platform::db::connect_lazy(&config.db).context("invalid database URL")?;
    platform::db::name_sessions(&pool, "audit", true);
    let answers = match &config.answers {
        Some(path) => Some(answers::read_file(path)?),
        None => None,
    };
    let answer_keys = answers
        .as_ref()
        .map(answers::Answers::keys)
        .unwrap_or_default();
    let (tx, stream_types) = log::Snapshot::begin(&pool)
        .await
        .context("reading the database")?;
    // Kafka is read while the snapshot is: its watermarks are taken after
    // the snapshot, so on a quiet system both hold the same events.
    let database = async {
        let snapshot = log::Snapshot::read(tx, &stream_types, &answer_keys)
            .await
            .context("reading the database");
        (snapshot, started.elapsed())
    };
    let topics = async {
        let topics = kafka::read_topics(
            &config.kafka,
            &stream_types,
            Duration::from_millis(config.kafka_timeout_ms),
        )
        .await
        .context("reading Kafka");
        (topics, started.elapsed())
    };
    let ((snapshot, database), (topics, kafka)) = tokio::join!(database, topics);
    let (snapshot, topics) = (snapshot?, topics?);
    pool.close().await;
    timings.database = database;
    timings.kafka = kafka;
    let started = Instant::now();

    let mut report = AuditReport::new(config.max_printed);
    snapshot.log.check(&mut report);
    let held = snapshot.bookkeeping;
    report.line(
        Check::Log,
        format!(
            "bookkeeping: sagas with work pending {}, dead letters parked: saga {}, projector {}",
            held.sagas_pending, held.saga_letters, held.projector_letters
        ),
    );
    let folded = fold::Folded::of(&snapshot.log, &mut report);
    kafka::check(&snapshot.log, &config.kafka, &topics, &mut report);
    read_models::check(&folded, &snapshot.read, &mut report);
    stock::check(&folded, &snapshot.read, &mut report);
    orders::check(&folded, &mut report);
    ledger::check(&folded, &snapshot.charges, &mut report);
    match &answers {
        Some(answers) => answers::check(answers, &snapshot.idempotency, &mut report),
        None => report.line(
            Check::Idempotency,
            "idempotency: no answers file given, skipped".to_owned(),
        ),
    }
    timings.checks = started.elapsed();
    report.finish(timings);
    Ok(report)
}
