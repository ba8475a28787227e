//! Load drivers: a closed loop (N clients, each sends its next request when
//! the previous one is answered; for maximum throughput) and an open loop
//! (requests sent on a fixed schedule whatever the answers; for latency,
//! counted from the scheduled send time so queueing is not hidden).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::stats::Samples;

/// What a run of a driver measured.
#[derive(Debug, Default)]
pub struct Measured {
    /// One latency per completed operation.
    pub latencies: Samples,
    /// Closed loop: from the first send to the last answer. Open loop: from
    /// the first send to the last (so [`Self::rate`] is the arrival rate
    /// achieved).
    pub elapsed: Duration,
}

impl Measured {
    /// Operations per second (see [`Self::elapsed`]).
    pub fn rate(&self) -> f64 {
        rate(self.latencies.len(), self.elapsed)
    }
}

/// `count / elapsed` in events per second (0 when nothing was timed).
pub fn rate(count: usize, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        return 0.0;
    }
    count as f64 / elapsed.as_secs_f64()
}

/// Runs `clients` loops for `duration`; each calls `op(client, n)` again as
/// soon as the previous call returned. The first error ends the run.
pub async fn closed_loop<F, Fut>(
    clients: usize,
    duration: Duration,
    op: F,
) -> anyhow::Result<Measured>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for client in 0..clients {
        let op = op.clone();
        tasks.spawn(async move {
            let mut samples = Samples::default();
            let mut n = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                op(client, n).await?;
                samples.push(sent.elapsed());
                n += 1;
            }
            anyhow::Ok(samples)
        });
    }
    let mut measured = Measured::default();
    while let Some(result) = tasks.join_next().await {
        measured
            .latencies
            .extend(result.context("client task panicked")??);
    }
    measured.elapsed = started.elapsed();
    Ok(measured)
}

/// Calls `op(n)` at `rate` per second for `duration`, each on its own task,
/// without waiting for earlier calls. A latency is the time from the call's
/// scheduled start to its end. Waits at most `drain` for the last calls.
pub async fn open_loop<F, Fut>(
    rate: f64,
    duration: Duration,
    drain: Duration,
    op: F,
) -> anyhow::Result<Measured>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    anyhow::ensure!(rate > 0.0, "the arrival rate must be positive");
    let op = Arc::new(op);
    let started = Instant::now();
    let total = (rate * duration.as_secs_f64()).ceil().max(1.0) as u64;
    let mut tasks = JoinSet::new();
    let mut measured = Measured::default();
    for n in 0..total {
        let scheduled = started + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(scheduled).await;
        let op = op.clone();
        tasks.spawn(async move {
            op(n).await?;
            anyhow::Ok(scheduled.elapsed())
        });
    }
    measured.elapsed = started.elapsed();
    let drained = tokio::time::timeout(drain, async {
        while let Some(result) = tasks.join_next().await {
            measured
                .latencies
                .push(result.context("request task panicked")??);
        }
        anyhow::Ok(())
    })
    .await;
    drained.map_err(|_| {
        anyhow::anyhow!(
            "{} requests still unanswered {drain:?} after the last send",
            tasks.len()
        )
    })??;
    Ok(measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closed_loop_runs_every_client_until_the_deadline() {
        let measured = closed_loop(3, Duration::from_millis(50), |_, _| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(())
        })
        .await
        .unwrap();
        // Every client ran at least once and stopped at the deadline.
        assert!(
            measured.latencies.len() >= 3,
            "{}",
            measured.latencies.len()
        );
    }

    #[tokio::test]
    async fn open_loop_sends_on_schedule_and_reports_errors() {
        let measured = open_loop(
            200.0,
            Duration::from_millis(100),
            Duration::from_secs(1),
            |_| async { Ok(()) },
        )
        .await
        .unwrap();
        assert_eq!(measured.latencies.len(), 20);
        let failed = open_loop(
            100.0,
            Duration::from_millis(20),
            Duration::from_secs(1),
            |n| async move {
                anyhow::ensure!(n != 1, "boom");
                Ok(())
            },
        )
        .await;
        assert!(failed.is_err());
    }
}
