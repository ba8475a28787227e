//! The leader's publishing loop: keep up to a window of batches in flight,
//! delete each batch once acknowledged, sleep only when everything visible
//! has been sent, and renew the leader's heartbeat when due.

use std::time::Duration;

use platform::kafka::KafkaConfig;
use rdkafka::producer::FutureProducer;
use sqlx::PgConnection;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::failpoint;
use super::lease::Heartbeat;
use super::outbox::{read_batch, remove};
use super::pipeline::{Acked, DeliveryError, Pipeline};
use super::wake::Wake;
use super::{RelayConfig, RelayError};

/// Publishes with `producer` until shutdown (then waits for what is in
/// flight), a database error, or a delivery failure (after removing the
/// acknowledged prefix).
pub(super) async fn publish(
    conn: &mut PgConnection,
    producer: &FutureProducer,
    kafka: &KafkaConfig,
    config: &RelayConfig,
    wake: &Wake,
    heartbeat: &mut Heartbeat,
    shutdown: &CancellationToken,
) -> Result<(), RelayError> {
    let timeout = Duration::from_millis(config.delivery_timeout_ms);
    let poll = Duration::from_millis(config.poll_interval_ms);
    let mut pipeline = Pipeline::new(producer, kafka, timeout);
    // Whether the outbox may hold visible rows that were not sent yet.
    let mut more = true;
    let mut next_poll = Instant::now() + poll;
    let mut refused: Option<DeliveryError> = None;
    loop {
        if shutdown.is_cancelled() {
            return finish(conn, &mut pipeline, config).await;
        }
        heartbeat.beat_if_due(conn).await?;
        while more && refused.is_none() && pipeline.batches() < config.window() {
            let batch = read_batch(conn, pipeline.in_flight(), config.batch_rows()).await?;
            next_poll = Instant::now() + poll;
            more = batch.len() == config.batch_rows();
            if batch.is_empty() {
                break;
            }
            if let Err(error) = pipeline.send(&batch).await {
                // Deliver what was sent before the refused event, then fail.
                refused = Some(error);
            }
        }
        if pipeline.batches() == 0 {
            if let Some(error) = refused {
                return Err(error.into());
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = wake.appended() => more = true,
                () = tokio::time::sleep_until(next_poll) => more = true,
                () = tokio::time::sleep_until(heartbeat.due()) => {}
            }
            continue;
        }
        let can_read = !more && refused.is_none() && pipeline.batches() < config.window();
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {}
            acked = pipeline.oldest_acked() => match acked {
                Acked::Batch(positions) => {
                    failpoint::abort_after_ack(config.failpoint_abort_after_ack);
                    remove(conn, &positions).await?;
                    tracing::debug!(count = positions.len(), "published events");
                }
                Acked::Failed(positions, error) => {
                    remove(conn, &positions).await?;
                    return Err(error.into());
                }
            },
            () = wake.appended(), if can_read => more = true,
            () = tokio::time::sleep_until(next_poll), if can_read => more = true,
            () = tokio::time::sleep_until(heartbeat.due()) => {}
        }
    }
}

/// On shutdown: reads nothing more, removes what gets acknowledged in time.
async fn finish(
    conn: &mut PgConnection,
    pipeline: &mut Pipeline<'_>,
    config: &RelayConfig,
) -> Result<(), RelayError> {
    while pipeline.batches() > 0 {
        match pipeline.oldest_acked().await {
            Acked::Batch(positions) => {
                failpoint::abort_after_ack(config.failpoint_abort_after_ack);
                remove(conn, &positions).await?;
            }
            Acked::Failed(positions, error) => {
                remove(conn, &positions).await?;
                tracing::warn!(%error, "stopping with events in flight; they stay in the outbox");
                break;
            }
        }
    }
    Ok(())
}
