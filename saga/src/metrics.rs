//! The saga worker's metrics (served on its admin port, see
//! `platform::metrics`): sagas by phase and parked dead letters, sampled
//! from the database, and dead letters written, counted as they happen.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// `dead_letters_total{consumer="saga", topic}`: one message dead-lettered.
pub(crate) fn record_dead_letter(topic: &str) {
    metrics::counter!("dead_letters_total", "consumer" => "saga", "topic" => topic.to_owned())
        .increment(1);
}

/// `saga_processed_events_pruned_total`: dedup rows deleted by the
/// retention pruner ([`crate::retention`]).
pub(crate) fn record_processed_events_pruned(rows: u64) {
    metrics::counter!("saga_processed_events_pruned_total").increment(rows);
}

/// Samples every `every` until `shutdown`: `saga_instances{phase}` and
/// `dead_letters_parked{consumer="saga", topic}`. A phase or topic that
/// empties is reported as 0, not left at its last value.
pub fn spawn_samplers(pool: PgPool, every: Duration, shutdown: CancellationToken) {
    describe();
    let seen: Arc<Mutex<(BTreeSet<String>, BTreeSet<String>)>> = Arc::default();
    platform::metrics::spawn_sampler("saga", every, shutdown, move || {
        let (pool, seen) = (pool.clone(), seen.clone());
        async move {
            let phases: Vec<(String, i64)> =
                sqlx::query_as("SELECT phase, count(*) FROM saga.order_sagas GROUP BY phase")
                    .fetch_all(&pool)
                    .await
                    .map_err(|error| error.to_string())?;
            let parked: Vec<(String, i64)> = sqlx::query_as(
                "SELECT topic, count(*) FROM saga.dead_letters WHERE status = 'parked' GROUP BY topic",
            )
            .fetch_all(&pool)
            .await
            .map_err(|error| error.to_string())?;
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            let (seen_phases, seen_topics) = &mut *seen;
            set_all(seen_phases, &phases, |phase, count| {
                metrics::gauge!("saga_instances", "phase" => phase.to_owned()).set(count);
            });
            set_all(seen_topics, &parked, |topic, count| {
                metrics::gauge!("dead_letters_parked", "consumer" => "saga", "topic" => topic.to_owned())
                    .set(count);
            });
            Ok(())
        }
    });
}

/// Sets each counted label to its count and every label seen before but
/// missing now to 0.
fn set_all(seen: &mut BTreeSet<String>, counts: &[(String, i64)], set: impl Fn(&str, f64)) {
    for (label, _) in counts {
        seen.insert(label.clone());
    }
    for label in seen.iter() {
        let count = counts
            .iter()
            .find(|(counted, _)| counted == label)
            .map_or(0, |(_, count)| *count);
        set(label, count as f64);
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!("saga_instances", "Order sagas by phase.");
    describe_gauge!(
        "dead_letters_parked",
        "Dead letters waiting for a re-drive, by consumer and topic."
    );
    describe_counter!(
        "saga_processed_events_pruned_total",
        "Processed-event (dedup) rows deleted by the retention pruner."
    );
    describe_counter!(
        "dead_letters_total",
        "Messages dead-lettered since the process started, by consumer and topic."
    );
}
