//! A seeded simulation of the order saga (issue 9, part 4): the pure saga
//! (`domain::saga`), the aggregates' `decide` / `evolve` and the worker's
//! bookkeeping (`saga::steps`, `saga::effects::outcome`, the offset
//! tracker) driven over an in-memory world by a virtual clock, with
//! dropped, duplicated, reordered and delayed messages, crashes between a
//! handler's decision and its commit and between the commit and the
//! offset, worker kills with provider calls in flight, and a provider that
//! captures, declines, loses answers, hangs and has outages. Invariants are
//! checked after every step and at rest. No I/O: no Postgres, no Kafka.
//!
//! `SAGA_SIM_SEEDS=<n>` sets how many seeds run (default 10 000);
//! `SAGA_SIM_SEED=<s>` runs one seed and prints its trace;
//! `SAGA_SIM_BUG=<name>` runs with one piece of bookkeeping broken (see
//! `sim::Knobs::with_bug`).

mod bus;
mod check;
mod provider;
mod rng;
mod sim;
mod worker;
mod world;

use std::time::Instant;

use sim::{run, Report};
pub use sim::{Faults, Knobs};

/// The bugs a test switches on, each expected to break some seed. Without
/// dedup only the at-most-once check fails: the pure saga and the
/// aggregates absorb a redelivered input by themselves, dedup is what makes
/// the handler do no work for it.
const BUGS: [&str; 5] = [
    "no-dedup",
    "dedup-outside-transaction",
    "offset-before-commit",
    "charge-key-per-attempt",
    "no-cancel-check",
];

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
    )
}

fn knobs_from_env() -> (Knobs, String) {
    match std::env::var("SAGA_SIM_BUG") {
        Ok(bug) => (
            Knobs::with_bug(&bug).unwrap_or_else(|| panic!("unknown SAGA_SIM_BUG={bug}")),
            format!("SAGA_SIM_BUG={bug} "),
        ),
        Err(_) => (Knobs::CORRECT, String::new()),
    }
}

/// The panic message of a failed seed: the failure, how to replay it, the
/// end of its trace.
fn failure_message(report: &Report, env: &str) -> String {
    let tail = report.trace.len().saturating_sub(60);
    format!(
        "seed {} failed after {} steps: {}\n\
         replay: {env}SAGA_SIM_SEED={} cargo test -p saga --test simulation -- --nocapture seeds\n\
         last trace lines:\n{}",
        report.seed,
        report.steps,
        report.failure.as_deref().unwrap_or("?"),
        report.seed,
        report.trace[tail..].join("\n")
    )
}

/// Runs `seeds` over the machine's cores; the reports in seed order.
fn run_all(seeds: std::ops::Range<u64>, knobs: &Knobs) -> Vec<Report> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let mut reports: Vec<Report> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let seeds = seeds.clone();
                scope.spawn(move || {
                    seeds
                        .filter(|s| s % threads == t)
                        .map(|s| run(s, knobs))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a simulation thread panicked"))
            .collect()
    });
    reports.sort_by_key(|r| r.seed);
    reports
}

#[test]
fn seeds_keep_every_invariant() {
    let (knobs, env) = knobs_from_env();
    if let Some(seed) = env_u64("SAGA_SIM_SEED") {
        let report = run(seed, &knobs);
        println!("{}", report.trace.join("\n"));
        println!("faults: {:?}", report.faults);
        assert!(
            report.failure.is_none(),
            "{}",
            failure_message(&report, &env)
        );
        return;
    }
    let count = env_u64("SAGA_SIM_SEEDS").unwrap_or(10_000);
    let started = Instant::now();
    let reports = run_all(0..count, &knobs);
    let mut faults = Faults::default();
    let (mut steps, mut confirmed, mut rejected, mut cancelled) = (0, 0, 0, 0);
    for report in &reports {
        faults += report.faults;
        steps += report.steps;
        confirmed += report.ends.confirmed;
        rejected += report.ends.rejected;
        cancelled += report.ends.cancelled;
    }
    println!(
        "{count} seeds in {:.1}s: {steps} steps; orders confirmed {confirmed}, rejected {rejected}, cancelled {cancelled}\nfaults: {faults:#?}",
        started.elapsed().as_secs_f64()
    );
    if let Some(report) = reports.iter().find(|r| r.failure.is_some()) {
        let failed = reports.iter().filter(|r| r.failure.is_some()).count();
        panic!(
            "{failed} of {count} seeds failed; the first:\n{}",
            failure_message(report, &env)
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in [0, 7, 12_345] {
        let first = run(seed, &Knobs::CORRECT);
        let again = run(seed, &Knobs::CORRECT);
        assert!(first.trace.len() > 10, "seed {seed} did something");
        assert_eq!(
            first.trace, again.trace,
            "seed {seed} ran differently twice"
        );
        assert_eq!(first.faults, again.faults);
    }
    assert_ne!(run(1, &Knobs::CORRECT).trace, run(2, &Knobs::CORRECT).trace);
}

/// Each broken piece of bookkeeping makes some seed fail within the first
/// few hundred, and the seed found fails again on replay.
#[test]
fn broken_bookkeeping_is_caught() {
    for bug in BUGS {
        let knobs = Knobs::with_bug(bug).expect("a known bug");
        let found = (0..2_000)
            .map(|s| run(s, &knobs))
            .find(|r| r.failure.is_some());
        let report = found.unwrap_or_else(|| panic!("{bug}: no seed of 2000 failed"));
        println!(
            "{bug}: seed {} fails: {}",
            report.seed,
            report.failure.as_deref().unwrap_or_default()
        );
        let again = run(report.seed, &knobs);
        assert_eq!(again.failure, report.failure, "{bug}: replay differs");
        assert!(
            run(report.seed, &Knobs::CORRECT).failure.is_none(),
            "{bug}: seed {} fails without the bug too",
            report.seed
        );
    }
}
