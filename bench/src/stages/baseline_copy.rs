//! Baseline (d): a `COPY (SELECT … FROM eventstore.events) TO STDOUT` scan of
//! the generated log, every column a replay reads, in log order.

use futures::TryStreamExt;
use std::time::Instant;

use super::Suite;
use crate::results::Value;

/// Key of this baseline (seconds for the whole log).
pub const KEY: &str = "copy_scan";

/// Runs this stage and records its figures.
pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let fixture = suite.log().await?;
    let events = fixture.log.events;
    let mut conn = fixture.db.pool.acquire().await?;
    let started = Instant::now();
    let mut stream = conn
        .copy_out_raw(
            "COPY (SELECT event_id, stream_id, stream_type, stream_version, global_position, event_type,
                          schema_version, recorded_at, payload, metadata
                   FROM eventstore.events ORDER BY global_position) TO STDOUT",
        )
        .await?;
    let mut bytes = 0usize;
    while let Some(chunk) = stream.try_next().await? {
        bytes += chunk.len();
    }
    drop(stream);
    let elapsed = started.elapsed();
    anyhow::ensure!(bytes > 0, "the COPY scan returned nothing");
    let name = format!("COPY scan of the {events}-event log");
    suite.results.baseline(
        "baselines",
        KEY,
        name,
        Value::Seconds {
            value: elapsed.as_secs_f64(),
        },
    );
    suite.results.add(
        "baselines",
        "COPY scan rate",
        Value::rate(crate::load::rate(events, elapsed), "events/s"),
    );
    Ok(())
}
