//! `bench`: the benchmark suite. In this one process it runs raw baselines
//! (SQL transaction, Kafka producer, upsert, COPY scan) and then each stage
//! of the system, each isolated on a fresh database and topic prefix with
//! only the components it needs started in-process; then it prints a table
//! (figure, value, baseline, ratio), writes `bench-results/<time>.json` (and
//! `latest.json`) and an SVG chart. Only Postgres and Kafka must be up.

mod config;
mod env;
mod generate;
mod http;
mod load;
mod report;
mod results;
mod sample;
mod stages;
mod stats;
mod system;

use std::process::ExitCode;

use clap::Parser;

use config::Config;
use report::machine::Machine;
use stages::Suite;

#[tokio::main]
async fn main() -> ExitCode {
    match run(Config::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the suite; `Ok(false)` if a stage failed.
async fn run(config: Config) -> anyhow::Result<bool> {
    testkit::init_logging();
    let stages = config.selected_stages()?;
    let sizes = config.sizes();
    eprintln!(
        "bench{}: stages {}; log {} events, {} clients, {} s per measurement, saga {} orders/s, relay {} events/s, backlog {} events",
        if sizes.quick { " --quick" } else { "" },
        stages.join(","),
        sizes.log_events,
        sizes.clients,
        sizes.duration.as_secs_f64(),
        sizes.rate,
        sizes.relay_rate,
        sizes.backlog_events,
    );
    let admin = sqlx::PgPool::connect(&testkit::database::admin_url())
        .await
        .ok();
    let machine = Machine::collect(admin.as_ref()).await;
    let mut suite = Suite::new(sizes.clone());
    suite.run(&stages).await;

    println!("{}", report::table::render(&suite.results));
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let dir = &config.out_dir;
    let sizes_json = serde_json::json!({
        "log_events": sizes.log_events,
        "small_log_events": sizes.small_log_events,
        "clients": sizes.clients,
        "rate": sizes.rate,
        "relay_rate": sizes.relay_rate,
        "duration_s": sizes.duration.as_secs_f64(),
        "backlog_events": sizes.backlog_events,
        "stages": stages,
    });
    let json = report::json::write(
        dir,
        &stamp,
        sizes_json,
        sizes.quick,
        &machine,
        &suite.results,
    )?;
    let title = format!(
        "orders-cqrs bench {} · {} · {} CPUs · {}",
        &machine.commit.get(..10).unwrap_or("?"),
        stamp,
        machine.nproc,
        machine.profile
    );
    let chart = dir.join(format!("{stamp}.svg"));
    report::chart::write(&chart, &title, &suite.results)?;
    std::fs::copy(&chart, dir.join("latest.svg"))?;
    println!(
        "machine: {} CPUs, {} MiB, {}; Postgres: {}; Kafka: {}",
        machine.nproc, machine.memory_mib, machine.uname, machine.postgres, machine.kafka
    );
    println!(
        "commit {}{} ({} build)",
        machine.commit,
        if machine.dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
        machine.profile
    );
    println!("wrote {} and {}", json.display(), chart.display());
    Ok(suite.results.failures.is_empty())
}
