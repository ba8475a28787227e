//! `chaos`: runs the whole system with several instances of every worker
//! under the supervisor, drives a workload, injects faults on a seeded
//! schedule, drains, and audits the result end to end (`make chaos`).
//!
//! Exit status: 0 when the auditor finds no violation, 1 otherwise.

mod faults;
mod system;
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::faults::Schedule;
use crate::system::System;
use crate::workload::Workload;

/// Settings of a chaos run.
#[derive(Debug, Parser)]
#[command(
    name = "chaos",
    about = "Faults on a seeded schedule against the whole system, then an end-to-end audit"
)]
pub struct Args {
    /// How long the workload and the faults run (s); a round of fault kinds
    /// under way then is finished first, so each kind comes at least once.
    #[arg(long, env = "CHAOS_SECONDS", default_value_t = 180)]
    pub seconds: u64,
    /// Seed of the fault schedule and the workload's choices (random if not given; printed).
    #[arg(long, env = "CHAOS_SEED")]
    pub seed: Option<u64>,
    /// Instances of each worker and of the command API.
    #[arg(long, env = "CHAOS_INSTANCES", default_value_t = 2)]
    pub instances: u16,
    /// Concurrent workload clients.
    #[arg(long, env = "CHAOS_CLIENTS", default_value_t = 6)]
    pub clients: usize,
    /// Commands a second the clients send together (kept below what the
    /// system sustains, so recovery after a fault can be measured).
    #[arg(long, env = "CHAOS_RATE", default_value_t = 20.0)]
    pub rate: f64,
    /// Where the service binaries are.
    #[arg(long, env = "BIN_DIR")]
    pub bin_dir: PathBuf,
    /// The repository root (for `infra/*.sh`).
    #[arg(long, env = "CHAOS_REPO", default_value = ".")]
    pub repo: PathBuf,
    /// Where each run's logs, answers and summary go (`<dir>/<run id>/`).
    #[arg(long, env = "CHAOS_OUT", default_value = ".data/chaos")]
    pub out: PathBuf,
    /// The application role's URL (the run creates its own database on that server).
    #[arg(long, env = "DATABASE_URL", default_value = platform::db::DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// The owner role's URL: it creates the run's database and migrates it.
    #[arg(long, env = "OWNER_DATABASE_URL", default_value = platform::db::DEFAULT_OWNER_DATABASE_URL)]
    pub owner_database_url: String,
    /// The query role's URL (its credentials are used on the run's database).
    #[arg(
        long,
        env = "QUERY_DATABASE_URL",
        default_value = "postgres://orders_query:orders_query@127.0.0.1:5432/orders"
    )]
    pub query_database_url: String,
    /// Kafka bootstrap brokers.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// The saga's payment deadline (ms): short, so orders whose payment hangs settle.
    #[arg(long, env = "SAGA_PAYMENT_DEADLINE_MS", default_value_t = 8000)]
    pub payment_deadline_ms: u64,
    /// Probability that the active relay aborts between Kafka's ack and the outbox delete.
    #[arg(long, env = "CHAOS_RELAY_ABORT_AFTER_ACK", default_value_t = 0.0005)]
    pub relay_abort_after_ack: f64,
    /// How long a relay leader is paused (s): longer than its leader lease.
    #[arg(long, env = "CHAOS_LEADER_PAUSE_SECS", default_value_t = 16)]
    pub leader_pause_secs: u64,
    /// Quiet time between faults (s), from MIN to MAX.
    #[arg(long, env = "CHAOS_GAP_SECS", default_value = "2,6", value_parser = parse_range)]
    pub gap_secs: (f64, f64),
    /// Which faults to inject (comma-separated: kill, pause, leader_pause,
    /// postgres_crash, kafka_crash, gateway_outage).
    #[arg(
        long,
        env = "CHAOS_FAULTS",
        value_delimiter = ',',
        default_value = "kill,pause,leader_pause,postgres_crash,kafka_crash,gateway_outage"
    )]
    pub faults: Vec<faults::FaultKind>,
    /// How long the drain may take before the audit counts what is left as violations (s).
    #[arg(long, env = "CHAOS_DRAIN_SECS", default_value_t = 180)]
    pub drain_secs: u64,
    /// RUST_LOG of the system's processes.
    #[arg(long, env = "CHAOS_SYSTEM_LOG", default_value = "warn")]
    pub system_log: String,
}

fn parse_range(text: &str) -> Result<(f64, f64), String> {
    let (min, max) = text.split_once(',').ok_or("expected MIN,MAX")?;
    let min: f64 = min.trim().parse().map_err(|e| format!("{e}"))?;
    let max: f64 = max.trim().parse().map_err(|e| format!("{e}"))?;
    if min <= 0.0 || max <= min {
        return Err("expected 0 < MIN < MAX".into());
    }
    Ok((min, max))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("chaos: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// One chaos run; true when the audit passed.
async fn run(args: Args) -> anyhow::Result<bool> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let run_id = format!("{seed}-{}", std::process::id());
    let out_dir = args.out.join(&run_id);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    println!(
        "chaos: seed {seed} ({}s, {} instances of each worker; replay with CHAOS_SEED={seed}); output in {}",
        args.seconds,
        args.instances,
        out_dir.display()
    );
    let system = System::start(&args, &out_dir, &run_id).await?;
    println!(
        "chaos: system up (database {}, topics {}*)",
        system.database_url.rsplit('/').next().unwrap_or(""),
        system.topic_prefix
    );

    let answers_path = out_dir.join("answers.jsonl");
    let workload = Workload::prepare(system.command_apis.clone(), &answers_path, 5, 400).await?;
    let canary_product = Workload::prepare(
        system.command_apis.clone(),
        &out_dir.join("canary-answers.jsonl"),
        1,
        1_000_000,
    )
    .await?
    .products()[0];

    let started = Instant::now();
    let stop = CancellationToken::new();
    let schedule = Schedule {
        seed,
        gap_s: args.gap_secs,
        leader_pause: Duration::from_secs(args.leader_pause_secs),
        repo: args.repo.clone(),
        kinds: args.faults.clone(),
    };
    let load_stop = CancellationToken::new();
    let load = {
        let workload = workload.clone();
        let stop = load_stop.clone();
        let (clients, rate) = (args.clients, args.rate);
        tokio::spawn(async move { workload.run(seed, clients, rate, stop).await })
    };
    let stop_after = {
        let stop = stop.clone();
        let seconds = args.seconds;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            stop.cancel();
        })
    };
    let baseline = faults::canary(&system, canary_product, Duration::from_secs(60)).await;
    println!(
        "chaos: workload running; a canary order took {} to be CONFIRMED with no fault (recovery times below include this)",
        baseline.map_or("(over 60 s)".into(), |d| format!("{:.1}s", d.as_secs_f64()))
    );
    let faults::Injected {
        faults,
        not_injected,
    } = faults::inject(&system, &schedule, canary_product, started, stop.clone()).await;
    stop_after.abort();
    load_stop.cancel();
    load.await.context("workload task")?;
    workload.finish()?;
    let ran = started.elapsed();
    let stats = workload.stats();
    println!(
        "chaos: workload stopped after {:.0}s: commands {:?}, answers {:?}, retries {}, unanswered {}",
        ran.as_secs_f64(),
        stats.commands,
        stats.answers,
        stats.retries,
        stats.unanswered
    );

    let failpoints = std::fs::read_to_string(&system.log_path)
        .map(|log| log.matches("failpoint relay.abort_after_ack fired").count())
        .unwrap_or(0);
    let restarts = std::fs::read_to_string(&system.log_path)
        .map(|log| log.matches("; restart ").count())
        .unwrap_or(0);
    let summary = faults::summarize(&faults);
    println!("chaos: {} faults injected, {failpoints} relay aborts after ack (failpoint), {restarts} restarts by the supervisor", faults.len());
    for (kind, (count, p50, max)) in &summary {
        println!(
            "  {kind:?}: {count}, recovery p50 {} max {}",
            p50.map_or("-".into(), |s| format!("{s:.1}s")),
            max.map_or("-".into(), |s| format!("{s:.1}s"))
        );
    }

    let drained = Instant::now();
    let audit = drain::until_clean(
        &args,
        &system,
        &answers_path,
        Duration::from_secs(args.drain_secs),
    )
    .await?;
    println!(
        "chaos: drained and audited in {:.1}s",
        drained.elapsed().as_secs_f64()
    );
    print!("{}", audit.text);

    let document = json!({
        "seed": seed,
        "seconds": ran.as_secs_f64(),
        "instances": args.instances,
        "workload": stats,
        "canary_no_fault_s": baseline.map(|d| d.as_secs_f64()),
        "faults": faults,
        "relay_aborts_after_ack": failpoints,
        "supervisor_restarts": restarts,
        "recovery_by_kind": summary.iter().map(|(kind, (count, p50, max))| json!({"kind": kind, "count": count, "p50_s": p50, "max_s": max})).collect::<Vec<_>>(),
        "drain_s": drained.elapsed().as_secs_f64(),
        "violations": audit.violations,
        "not_injected": not_injected,
    });
    std::fs::write(
        out_dir.join("summary.json"),
        serde_json::to_string_pretty(&document)?,
    )?;
    system.stop().await?;
    for fault in &not_injected {
        println!("chaos: a fault was NOT injected: {fault}");
    }
    let passed = audit.violations.is_empty() && not_injected.is_empty();
    println!(
        "chaos: seed {seed}: {} ({} violations, {} faults not injected); summary in {}",
        if passed { "PASSED" } else { "FAILED" },
        audit.violations.len(),
        not_injected.len(),
        out_dir.join("summary.json").display()
    );
    Ok(passed)
}

mod drain;
