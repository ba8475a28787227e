//! Replay (`projector::replay`) of the generated log, and of a log a tenth
//! of its size, to show whether the cost is linear.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::{baseline_copy, baseline_upsert, generated_log, Suite};
use crate::load::rate;
use crate::results::Value;

/// Rebuilds every read model of the database behind `pool`; returns the time taken.
pub async fn rebuild(pool: &PgPool) -> anyhow::Result<Duration> {
    let options = projector::ReplayOptions {
        progress: projector::ProgressMode::Hidden,
        ..Default::default()
    };
    let started = Instant::now();
    projector::replay(pool, &options).await?;
    Ok(started.elapsed())
}

/// Runs this stage and records its figures.
pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let small = generated_log("replay_small", suite.sizes.small_log_events).await?;
    let small_time = rebuild(&small.db.pool).await;
    let small_events = small.log.events;
    small.db.remove().await?;
    let small_time = small_time?;
    let fixture = suite.log().await?;
    let events = fixture.log.events;
    let time = rebuild(&fixture.db.pool).await?;

    let results = &mut suite.results;
    results.add(
        "replay",
        format!("replay of {small_events} events"),
        Value::Seconds {
            value: small_time.as_secs_f64(),
        },
    );
    results.against(
        "replay",
        format!("replay of {events} events"),
        Value::Seconds {
            value: time.as_secs_f64(),
        },
        baseline_copy::KEY,
    );
    let name = format!("replay rate ({events} events)");
    results.against(
        "replay",
        name,
        Value::rate(rate(events, time), "events/s"),
        baseline_upsert::KEY,
    );
    // 1.0 = exactly linear; above 1 the bigger log costs more per event.
    let per_event =
        (time.as_secs_f64() / events as f64) / (small_time.as_secs_f64() / small_events as f64);
    results.add(
        "replay",
        format!("time per event, {events} vs {small_events} events"),
        Value::number(per_event, "×"),
    );
    Ok(())
}
