//! The bulk part of a replay: scan the log, fold it in memory, `COPY` the
//! rows into the shadow tables.
//!
//! One task streams the log (one statement, decoding payloads as they
//! arrive) while another folds the decoded chunks, so reading, decoding and
//! folding overlap; then every shadow table is loaded by its own `COPY`.

use eventstore::scan;
use futures::StreamExt;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use super::ReplayError;
use crate::apply::fold_next;
use crate::projection::{Decoded, Fold, Projection, Schema};

/// Chunks in flight between the reader and the folder.
const CHANNEL_CHUNKS: usize = 8;

/// Folds every event of the log into fresh in-memory rows of `projections`;
/// returns the folds (in the order of `projections`) and the events read.
pub(crate) async fn fold_log(
    pool: &PgPool,
    projections: &[&'static dyn Projection],
    stream_types: &[String],
    chunk_size: usize,
    cancel: &CancellationToken,
    progress: &mut Progress,
) -> Result<(Vec<Box<dyn Fold>>, u64), ReplayError> {
    let (sender, mut chunks) = mpsc::channel::<Vec<Decoded>>(CHANNEL_CHUNKS);
    let reader = tokio::spawn(read_log(
        pool.clone(),
        stream_types.to_vec(),
        chunk_size.max(1),
        sender,
    ));
    let mut folds: Vec<Box<dyn Fold>> = projections.iter().map(|p| p.fold()).collect();
    let mut events = 0_u64;
    let folded = async {
        while let Some(chunk) = chunks.recv().await {
            if cancel.is_cancelled() {
                return Err(ReplayError::Cancelled);
            }
            for event in &chunk {
                for (projection, fold) in projections.iter().zip(folds.iter_mut()) {
                    if projection.handles(&event.stream_type) {
                        fold_next(fold.as_mut(), event)?;
                    }
                }
            }
            events += chunk.len() as u64;
            progress.advance(chunk.len() as u64);
        }
        Ok(())
    }
    .await;
    // Dropping the receiver stops a reader that is still going.
    drop(chunks);
    let read = reader.await.unwrap_or_else(|error| {
        Err(ReplayError::Database {
            action: "reading the log",
            source: sqlx::Error::Protocol(format!("the log reader failed: {error}")),
        })
    });
    folded?;
    read?;
    Ok((folds, events))
}

/// Streams the log into `sender` in decoded chunks.
async fn read_log(
    pool: PgPool,
    stream_types: Vec<String>,
    chunk_size: usize,
    sender: mpsc::Sender<Vec<Decoded>>,
) -> Result<(), ReplayError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(ReplayError::db("reading the log"))?;
    let mut rows = scan::scan(&mut conn, &stream_types);
    let mut chunk = Vec::with_capacity(chunk_size);
    while let Some(row) = rows.next().await {
        chunk.push(Decoded::from_scanned(
            row.map_err(ReplayError::db("reading the log"))?,
        ));
        if chunk.len() >= chunk_size {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(chunk_size));
            if sender.send(full).await.is_err() {
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() {
        let _ = sender.send(chunk).await;
    }
    Ok(())
}

/// Loads each fold's rows into its (index-free) shadow table, all tables at
/// once, each over its own connection.
pub(crate) async fn copy_into_shadow(
    pool: &PgPool,
    folds: &mut [Box<dyn Fold>],
) -> Result<(), ReplayError> {
    let copies = folds.iter_mut().map(|fold| async move {
        let mut conn = pool
            .acquire()
            .await
            .map_err(ReplayError::db("loading the shadow tables"))?;
        let rows = fold
            .copy_into(&mut conn, Schema::Shadow)
            .await
            .map_err(ReplayError::db("loading the shadow tables"))?;
        tracing::debug!(table = fold.spec().table, rows, "shadow table loaded");
        Ok::<_, ReplayError>(())
    });
    futures::future::try_join_all(copies).await?;
    Ok(())
}
