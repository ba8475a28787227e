//! Replay: rebuilds read models from the PostgreSQL event log (never Kafka).
//!
//! 1. Takes an advisory lock, so only one replay runs at a time.
//! 2. Creates the shadow schema `read_replay` with empty copies of the
//!    selected projections' tables.
//! 3. Streams the log (one statement) and folds it in memory with the same
//!    projections and next-version rule the live projector uses, then loads
//!    each shadow table with `COPY` and only then builds its indexes.
//! 4. Catches up, without locks, with what committed meanwhile: every stream
//!    whose version in the log is above the shadow row's.
//! 5. Swaps in one transaction: locks the live tables, applies whatever the
//!    shadow still misses, replaces the live tables by the shadow ones.
//!
//! Queries and the live projector wait for the swap's lock and then see the
//! complete new tables. The shadow rows are at least as new as anything the
//! live projector had applied, so its next events are skipped or applied by
//! the version rule. On failure the shadow is dropped and `read` is untouched.

mod load;
mod progress;
mod shadow;

use std::fmt;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::apply::ApplyError;
use crate::projection::{self, Projection};

pub use progress::ProgressMode;
pub use shadow::QUERY_ROLE;

use progress::{rate, Progress};

/// Advisory lock key held while a replay runs ("replay" in ASCII).
pub const REPLAY_LOCK_KEY: i64 = 0x7265_706c_6179;

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Names of the projections to rebuild; empty means all.
    pub projections: Vec<String>,
    /// Events per chunk handed from the log reader to the fold.
    pub batch_size: i64,
    /// How progress is shown.
    pub progress: ProgressMode,
    /// Cancelling it stops the replay (the shadow is dropped).
    pub cancel: CancellationToken,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            projections: Vec::new(),
            batch_size: 1000,
            progress: ProgressMode::Auto,
            cancel: CancellationToken::new(),
        }
    }
}

/// Why a replay failed. The live read models are untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Another replay holds the lock.
    #[error("another replay is already running (advisory lock {REPLAY_LOCK_KEY:#x} is held); try again when it has finished")]
    AlreadyRunning,
    /// A projection name that does not exist.
    #[error("unknown projection {name:?}; known projections: {known}")]
    UnknownProjection {
        /// The name given.
        name: String,
        /// The valid names.
        known: String,
    },
    /// The batch size is not positive.
    #[error("batch size must be at least 1 (got {0})")]
    InvalidBatchSize(i64),
    /// PostgreSQL failed.
    #[error("database error while {action}: {source}")]
    Database {
        /// What replay was doing.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// An event of the log could not be applied. Replay fails rather than
    /// build read models that silently lack it (the live projector parks
    /// such an event, and the rest of its stream, as dead letters).
    #[error(
        "{0}; replay does not skip events, so it cannot rebuild the read models while the log \
         holds one it cannot apply (the live projector parks it: see `projector dead-letters list`)"
    )]
    Apply(Box<ApplyError>),
    /// The replay was cancelled.
    #[error("replay cancelled")]
    Cancelled,
}

impl From<ApplyError> for ReplayError {
    fn from(error: ApplyError) -> Self {
        Self::Apply(Box::new(error))
    }
}

impl ReplayError {
    fn db(action: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Database { action, source }
    }
}

/// What a successful replay did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplaySummary {
    /// The projections rebuilt.
    pub projections: Vec<&'static str>,
    /// Events read from the log and applied to the shadow.
    pub events: u64,
    /// Rows of each swapped table (`read.<table>`).
    pub rows: Vec<(String, i64)>,
    /// Wall-clock time of the whole replay.
    pub elapsed: Duration,
}

impl ReplaySummary {
    /// Events applied per second.
    pub fn events_per_second(&self) -> f64 {
        rate(self.events, self.elapsed)
    }
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<String> = self
            .rows
            .iter()
            .map(|(table, count)| format!("{table}={count}"))
            .collect();
        write!(
            f,
            "replay of {} finished: {} events applied in {:.2}s ({:.0} events/s); rows: {}",
            self.projections.join(", "),
            self.events,
            self.elapsed.as_secs_f64(),
            self.events_per_second(),
            rows.join(", ")
        )
    }
}

/// Resolves projection names; empty means all.
pub fn select_projections(names: &[String]) -> Result<Vec<&'static dyn Projection>, ReplayError> {
    if names.is_empty() {
        return Ok(projection::all().to_vec());
    }
    let mut selected = Vec::new();
    for name in names {
        let found = projection::by_name(name).ok_or_else(|| ReplayError::UnknownProjection {
            name: name.clone(),
            known: projection::names().join(", "),
        })?;
        if !selected
            .iter()
            .any(|p: &&dyn Projection| p.name() == found.name())
        {
            selected.push(found);
        }
    }
    // Keep the canonical order, which is also the order the live projector locks tables in.
    selected.sort_by_key(|p| projection::names().iter().position(|n| *n == p.name()));
    Ok(selected)
}

/// Rebuilds the selected read models from the log and swaps them in.
pub async fn replay(pool: &PgPool, options: &ReplayOptions) -> Result<ReplaySummary, ReplayError> {
    let projections = select_projections(&options.projections)?;
    if options.batch_size < 1 {
        return Err(ReplayError::InvalidBatchSize(options.batch_size));
    }
    // One dedicated session: it holds the advisory lock until it closes.
    let mut conn = pool
        .acquire()
        .await
        .map_err(ReplayError::db("connecting"))?
        .detach();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REPLAY_LOCK_KEY)
        .fetch_one(&mut conn)
        .await
        .map_err(ReplayError::db("taking the replay lock"))?;
    if !locked {
        let _ = conn.close().await;
        return Err(ReplayError::AlreadyRunning);
    }
    let result = replay_locked(pool, &mut conn, &projections, options).await;
    if let Err(error) = &result {
        tracing::error!(%error, "replay failed; dropping the shadow schema");
        if let Err(error) = shadow::drop_schema(&mut conn).await {
            tracing::warn!(%error, "cannot drop the shadow schema; the next replay will");
        }
    }
    // Unlock explicitly: closing alone releases the lock only once the server
    // has noticed, which a replay started right after could race with.
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(REPLAY_LOCK_KEY)
        .execute(&mut conn)
        .await;
    if let Err(error) = unlocked {
        tracing::warn!(%error, "cannot release the replay lock; closing the session releases it");
    }
    let _ = conn.close().await;
    result
}

async fn replay_locked(
    pool: &PgPool,
    conn: &mut PgConnection,
    projections: &[&'static dyn Projection],
    options: &ReplayOptions,
) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    let mut tables: Vec<&str> = Vec::new();
    let mut stream_types: Vec<String> = Vec::new();
    for projection in projections {
        tables.extend(projection.tables());
        for stream_type in projection.stream_types() {
            if !stream_types.iter().any(|t| t == stream_type) {
                stream_types.push((*stream_type).to_owned());
            }
        }
    }
    let names: Vec<&'static str> = projections.iter().map(|p| p.name()).collect();
    tracing::info!(projections = ?names, ?tables, "replay: building shadow tables");
    shadow::create(conn, &tables).await?;

    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM eventstore.events WHERE stream_type = ANY($1)")
            .bind(&stream_types)
            .fetch_one(&mut *conn)
            .await
            .map_err(ReplayError::db("counting events"))?;
    let mut progress = Progress::start(options.progress, total.max(0) as u64);
    let chunk = usize::try_from(options.batch_size).unwrap_or(usize::MAX);
    let result = load::fold_log(
        pool,
        projections,
        &stream_types,
        chunk,
        &options.cancel,
        &mut progress,
    )
    .await;
    progress.finish();
    let (mut folds, mut events) = result?;
    let folded = started.elapsed();
    load::copy_into_shadow(pool, &mut folds).await?;
    drop(folds);
    let copied = started.elapsed();
    shadow::build_indexes(pool, &tables).await?;
    let indexed = started.elapsed();

    // Events that committed while (or after) streaming, without the lock yet,
    // so the locked catch-up in the swap has almost nothing left to do.
    let late = shadow::catch_up(conn, projections).await?;
    let caught_up = started.elapsed();
    let swapped = shadow::swap(conn, projections, &tables).await?;
    events += late + swapped.caught_up;
    let ms = |d: Duration| d.as_millis() as u64;
    tracing::info!(
        scan_and_fold_ms = ms(folded),
        copy_ms = ms(copied - folded),
        index_ms = ms(indexed - copied),
        catch_up_ms = ms(caught_up - indexed),
        swap_ms = ms(started.elapsed() - caught_up),
        late_events = late + swapped.caught_up,
        "replay phases"
    );
    Ok(ReplaySummary {
        projections: names,
        events,
        rows: swapped.rows,
        elapsed: started.elapsed(),
    })
}
