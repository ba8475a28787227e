//! The command line and the sizes it resolves to.

use std::time::Duration;

use clap::Parser;

/// Every stage, in the order the suite runs them: raw baselines first.
pub const STAGES: &[&str] = &[
    "baseline-tx",
    "baseline-kafka",
    "baseline-upsert",
    "baseline-copy",
    "commands",
    "hot-stream",
    "relay",
    "projector",
    "query",
    "saga",
    "replay",
    "growth",
];

/// Runs raw baselines and then every stage of the system, each isolated on
/// a fresh database and topic prefix, in this one process (only Postgres
/// and Kafka must be up). Prints a table, writes JSON and an SVG chart.
#[derive(Debug, Clone, Parser)]
#[command(name = "bench", version)]
pub struct Config {
    /// Small sizes and seconds per stage (CI): exercises every stage,
    /// asserts nothing about speed.
    #[arg(long)]
    pub quick: bool,
    /// Comma-separated stages to run (default: all). Known: see `STAGES`.
    #[arg(long, value_delimiter = ',')]
    pub stages: Vec<String>,
    /// Events in the generated log for replay, COPY scan and growth (default 1M; quick 20k).
    #[arg(long)]
    pub log_events: Option<usize>,
    /// Concurrent closed-loop clients (default 16; quick 4).
    #[arg(long)]
    pub clients: Option<usize>,
    /// Open-loop order arrival rate of the saga stage, orders/s (default 200; quick 50).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds per timed measurement (default 10; quick 1.5).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Open-loop event rate of the relay latency measurement, events/s (default 1000; quick 200).
    #[arg(long)]
    pub relay_rate: Option<u32>,
    /// Events of the relay drain and of the projector backlog (default 100k; quick 5k).
    #[arg(long)]
    pub backlog_events: Option<usize>,
    /// Where the JSON and the chart go.
    #[arg(long, default_value = "bench-results")]
    pub out_dir: std::path::PathBuf,
}

/// The resolved sizes of a run.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Whether this is the quick run.
    pub quick: bool,
    /// Events of the big generated log.
    pub log_events: usize,
    /// Events of the small log (for replay linearity): a tenth of the big one.
    pub small_log_events: usize,
    /// Closed-loop clients.
    pub clients: usize,
    /// Saga open-loop arrival rate (orders/s).
    pub rate: f64,
    /// Relay open-loop rate (events/s).
    pub relay_rate: u32,
    /// Length of each timed measurement.
    pub duration: Duration,
    /// Relay drain and projector backlog size.
    pub backlog_events: usize,
}

impl Config {
    /// The sizes these flags ask for.
    pub fn sizes(&self) -> Sizes {
        let q = self.quick;
        let log_events = self
            .log_events
            .unwrap_or(if q { 20_000 } else { 1_000_000 });
        Sizes {
            quick: q,
            log_events,
            small_log_events: (log_events / 10).max(1),
            clients: self.clients.unwrap_or(if q { 4 } else { 16 }).max(1),
            rate: self.rate.unwrap_or(if q { 50.0 } else { 200.0 }),
            relay_rate: self.relay_rate.unwrap_or(if q { 200 } else { 1000 }),
            duration: Duration::from_secs_f64(self.duration.unwrap_or(if q { 1.5 } else { 10.0 })),
            backlog_events: self
                .backlog_events
                .unwrap_or(if q { 5_000 } else { 100_000 }),
        }
    }

    /// The stages to run, in suite order; an unknown name is an error.
    pub fn selected_stages(&self) -> anyhow::Result<Vec<&'static str>> {
        if let Some(unknown) = self.stages.iter().find(|s| !STAGES.contains(&s.as_str())) {
            anyhow::bail!(
                "unknown stage {unknown:?}; known stages: {}",
                STAGES.join(",")
            );
        }
        Ok(STAGES
            .iter()
            .copied()
            .filter(|s| self.stages.is_empty() || self.stages.iter().any(|x| x == s))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_keep_suite_order_and_unknown_names_are_refused() {
        let config = Config::parse_from(["bench", "--stages", "replay,baseline-tx"]);
        assert_eq!(
            config.selected_stages().unwrap(),
            vec!["baseline-tx", "replay"]
        );
        let config = Config::parse_from(["bench", "--stages", "nope"]);
        assert!(config.selected_stages().is_err());
        assert_eq!(
            Config::parse_from(["bench"])
                .selected_stages()
                .unwrap()
                .len(),
            STAGES.len()
        );
    }

    #[test]
    fn quick_sizes_are_small_and_flags_override_them() {
        let sizes = Config::parse_from(["bench", "--quick", "--clients", "2"]).sizes();
        assert_eq!(
            (sizes.log_events, sizes.small_log_events, sizes.clients),
            (20_000, 2_000, 2)
        );
        assert_eq!(Config::parse_from(["bench"]).sizes().log_events, 1_000_000);
    }
}
