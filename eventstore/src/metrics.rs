//! The event log's metrics (see `platform::metrics` for where they are served).
//!
//! Appends are counted when the statement succeeds inside the caller's
//! transaction, so a transaction that later rolls back still counts: the
//! figures say what the log was asked to do, the log itself what it holds.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// `eventstore_events_appended_total{stream_type}`: events written by an append.
pub(crate) fn record_appended(stream_type: &str, events: usize) {
    metrics::counter!("eventstore_events_appended_total", "stream_type" => stream_type.to_owned())
        .increment(events as u64);
}

/// `eventstore_append_conflicts_total{stream_type}`: appends refused because
/// the stream was not at the expected version.
pub(crate) fn record_conflict(stream_type: &str) {
    metrics::counter!("eventstore_append_conflicts_total", "stream_type" => stream_type.to_owned())
        .increment(1);
}

/// `relay_events_published_total{topic}`: events the broker acknowledged.
pub(crate) fn record_published(topics: &[String]) {
    let mut counted: Vec<(&str, u64)> = Vec::new();
    for topic in topics {
        match counted.iter_mut().find(|(name, _)| name == topic) {
            Some((_, count)) => *count += 1,
            None => counted.push((topic, 1)),
        }
    }
    for (topic, count) in counted {
        metrics::counter!("relay_events_published_total", "topic" => topic.to_owned())
            .increment(count);
    }
}

/// Samples the outbox every `every` until `shutdown`: `outbox_backlog_events`
/// (rows not yet acknowledged by Kafka) and `outbox_oldest_event_age_seconds`
/// (how long the oldest of them has waited; 0 when the outbox is empty).
pub fn spawn_outbox_sampler(pool: PgPool, every: Duration, shutdown: CancellationToken) {
    describe();
    platform::metrics::spawn_sampler("outbox", every, shutdown, move || {
        let pool = pool.clone();
        async move {
            let (backlog, age): (i64, f64) = sqlx::query_as(
                "SELECT count(*),
                        coalesce(extract(epoch FROM now() - min(enqueued_at)), 0)::float8
                 FROM eventstore.outbox",
            )
            .fetch_one(&pool)
            .await
            .map_err(|error| error.to_string())?;
            metrics::gauge!("outbox_backlog_events").set(backlog as f64);
            metrics::gauge!("outbox_oldest_event_age_seconds").set(age.max(0.0));
            Ok(())
        }
    });
}

/// Help texts of the event log's and the relay's metrics.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_counter!(
        "eventstore_events_appended_total",
        "Events appended to the log, by stream type (counted before commit)."
    );
    describe_counter!(
        "eventstore_append_conflicts_total",
        "Appends refused by optimistic concurrency, by stream type."
    );
    describe_counter!(
        "relay_events_published_total",
        "Events acknowledged by Kafka, by topic."
    );
    describe_gauge!(
        "outbox_backlog_events",
        "Outbox rows not yet acknowledged by Kafka."
    );
    describe_gauge!(
        "outbox_oldest_event_age_seconds",
        Unit::Seconds,
        "Age of the oldest outbox row (0 when empty)."
    );
    describe_gauge!(
        "relay_is_leader",
        "1 while this relay holds the leader lock."
    );
}
