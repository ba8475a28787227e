//! The live projector's metrics (served on its admin port, see
//! `platform::metrics`), the dead-letter ones named and labelled like the
//! saga worker's (`consumer="projector"`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::apply::Verdict;
use crate::projection::{self, Decoded};

/// Records what one committed partition batch did:
/// `projector_events_total{topic, outcome}` and, per projection,
/// `projector_last_global_position{projection}` (the highest log position
/// this process has applied or found already applied; never moves back,
/// though partitions commit in parallel).
pub(crate) fn record_batch(topic: &str, events: &[Decoded], verdicts: &[Verdict]) {
    let mut outcomes = [0_u64; 4];
    let mut highest: HashMap<&'static str, i64> = HashMap::new();
    for (event, verdict) in events.iter().zip(verdicts) {
        let slot = match verdict {
            Verdict::Applied => 0,
            Verdict::Duplicate => 1,
            Verdict::Ignored => 2,
            Verdict::Rejected(_) => 3,
        };
        outcomes[slot] += 1;
        if matches!(verdict, Verdict::Applied | Verdict::Duplicate) {
            for projection in projection::interested_in(&event.stream_type) {
                let position = highest.entry(projection.name()).or_insert(0);
                *position = (*position).max(event.global_position);
            }
        }
    }
    for (outcome, count) in ["applied", "duplicate", "ignored", "rejected"]
        .into_iter()
        .zip(outcomes)
    {
        if count > 0 {
            record_outcome(topic, outcome, count);
        }
    }
    if highest.is_empty() {
        return;
    }
    static LAST: Mutex<Vec<(&'static str, i64)>> = Mutex::new(Vec::new());
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    for (name, position) in highest {
        let current = match last.iter_mut().find(|(known, _)| *known == name) {
            Some((_, known)) => {
                *known = (*known).max(position);
                *known
            }
            None => {
                last.push((name, position));
                position
            }
        };
        metrics::gauge!("projector_last_global_position", "projection" => name).set(current as f64);
    }
}

/// `projector_events_total{topic, outcome}` for `count` messages.
pub(crate) fn record_outcome(topic: &str, outcome: &'static str, count: u64) {
    metrics::counter!("projector_events_total", "topic" => topic.to_owned(), "outcome" => outcome)
        .increment(count);
}

/// `projector_batch_size`: messages per partition transaction.
pub(crate) fn record_batch_size(events: usize) {
    metrics::histogram!("projector_batch_size").record(events as f64);
}

/// `dead_letters_total{consumer="projector", topic}`: one message dead-lettered.
pub(crate) fn record_dead_letter(topic: &str) {
    metrics::counter!("dead_letters_total", "consumer" => "projector", "topic" => topic.to_owned())
        .increment(1);
}

/// Samples every `every` until `shutdown`:
/// `dead_letters_parked{consumer="projector", topic}` for each of `topics`
/// (0 when none is parked).
pub(crate) fn spawn_samplers(
    pool: PgPool,
    topics: Vec<String>,
    every: Duration,
    shutdown: CancellationToken,
) {
    platform::metrics::spawn_sampler("projector", every, shutdown, move || {
        let (pool, topics) = (pool.clone(), topics.clone());
        async move {
            let parked: Vec<(String, i64)> = sqlx::query_as(
                "SELECT t.topic, count(d.id) FROM unnest($1::text[]) AS t(topic)
                 LEFT JOIN projector.dead_letters d ON d.topic = t.topic AND d.status = 'parked'
                 GROUP BY t.topic",
            )
            .bind(&topics)
            .fetch_all(&pool)
            .await
            .map_err(|error| error.to_string())?;
            for (topic, count) in parked {
                metrics::gauge!("dead_letters_parked", "consumer" => "projector", "topic" => topic)
                    .set(count as f64);
            }
            Ok(())
        }
    });
}

/// Help texts.
pub(crate) fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "projector_events_total",
        "Messages handled by the live projector, by topic and outcome (applied, duplicate, ignored, rejected, undecodable, blocked); rejected, undecodable and blocked ones are dead-lettered."
    );
    describe_gauge!(
        "dead_letters_parked",
        "Dead letters waiting for a re-drive, by consumer and topic."
    );
    describe_counter!(
        "dead_letters_total",
        "Messages dead-lettered since the process started, by consumer and topic."
    );
    describe_gauge!(
        "projector_last_global_position",
        "Highest log position applied by this projector, per projection."
    );
    describe_histogram!(
        "projector_batch_size",
        "Messages applied per partition transaction."
    );
}
