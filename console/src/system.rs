//! Live figures of the pipeline, computed from the database itself (so they
//! hold across projector restarts and instances): how far each projection
//! lags the log, and what the outbox still has to publish.
//!
//! A projection's row per stream carries the stream version it applied, so
//! the events it still lacks are exactly `eventstore.streams.version - row
//! version` over its stream types; the oldest of them tells since when it
//! is behind. "Applied through" is the position before that event (or the
//! log head when nothing is missing).

use chrono::{DateTime, Utc};
use projector::Schema;
use serde::Serialize;
use sqlx::PgPool;

use crate::error::{ConsoleError, DbContext};

/// One projection's lag.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionLag {
    /// Its name (`projector replay --projection`).
    pub projection: &'static str,
    /// Its table.
    pub table: String,
    /// Every event up to this log position is applied.
    pub applied_through: i64,
    /// Events of its streams in the log but not applied yet.
    pub events_behind: i64,
    /// Position of the oldest of them.
    pub oldest_missing_position: Option<i64>,
    /// How long the oldest of them has been in the log (s).
    pub oldest_missing_age_seconds: Option<f64>,
}

/// The outbox backlog.
#[derive(Debug, Clone, Serialize)]
pub struct Outbox {
    /// Rows still to publish.
    pub rows: i64,
    /// How long the oldest has waited (s); `None` when it is empty.
    pub oldest_age_seconds: Option<f64>,
}

/// Everything `/system` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// When they were taken.
    pub at: DateTime<Utc>,
    /// Highest position in the log (0 when empty).
    pub log_head: i64,
    /// What the outbox still holds.
    pub outbox: Outbox,
    /// Each projection's lag.
    pub projections: Vec<ProjectionLag>,
    /// Saga dead letters still parked.
    pub parked_saga_letters: i64,
    /// Projector dead letters still parked.
    pub parked_projector_letters: i64,
}

/// Takes the figures now.
#[tracing::instrument(skip(pool))]
pub async fn figures(pool: &PgPool) -> Result<Figures, ConsoleError> {
    let (at, log_head): (DateTime<Utc>, i64) = sqlx::query_as(
        "SELECT now(), COALESCE((SELECT max(global_position) FROM eventstore.events), 0)",
    )
    .fetch_one(pool)
    .await
    .db_context(|| "reading the log head".to_owned())?;
    let (rows, oldest_age_seconds): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), EXTRACT(EPOCH FROM now() - min(enqueued_at))::float8
         FROM eventstore.outbox",
    )
    .fetch_one(pool)
    .await
    .db_context(|| "reading the outbox backlog".to_owned())?;
    let mut projections = Vec::new();
    for projection in projector::projection::all() {
        projections.push(lag(pool, projection.spec(), log_head).await?);
    }
    let (parked_saga_letters, parked_projector_letters): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM saga.dead_letters WHERE status = 'parked'),
                (SELECT count(*) FROM projector.dead_letters WHERE status = 'parked')",
    )
    .fetch_one(pool)
    .await
    .db_context(|| "counting parked dead letters".to_owned())?;
    Ok(Figures {
        at,
        log_head,
        outbox: Outbox {
            rows,
            oldest_age_seconds,
        },
        projections,
        parked_saga_letters,
        parked_projector_letters,
    })
}

async fn lag(
    pool: &PgPool,
    spec: &'static projector::projection::Spec,
    log_head: i64,
) -> Result<ProjectionLag, ConsoleError> {
    let table = Schema::Live.table(spec.table);
    // Table and key come from the projector's static specs, never input.
    let sql = format!(
        "WITH behind AS (
             SELECT s.stream_id, COALESCE(r.version, 0) AS applied, s.version
             FROM eventstore.streams s
             LEFT JOIN {table} r ON r.{key} = s.stream_id
             WHERE s.stream_type = ANY($1) AND s.version > COALESCE(r.version, 0)
         )
         SELECT COALESCE(sum(b.version - b.applied), 0)::bigint,
                min(e.global_position),
                EXTRACT(EPOCH FROM now() - min(e.recorded_at))::float8
         FROM behind b
         LEFT JOIN eventstore.events e
                ON e.stream_id = b.stream_id AND e.stream_version = b.applied + 1",
        key = spec.key,
    );
    let stream_types: Vec<&str> = spec.stream_types.to_vec();
    let (events_behind, oldest_missing_position, oldest_missing_age_seconds): (
        i64,
        Option<i64>,
        Option<f64>,
    ) = sqlx::query_as(&sql)
        .bind(stream_types)
        .fetch_one(pool)
        .await
        .db_context(|| format!("measuring the lag of {}", spec.name))?;
    Ok(ProjectionLag {
        projection: spec.name,
        table,
        applied_through: oldest_missing_position.map_or(log_head, |p| p - 1),
        events_behind,
        oldest_missing_position,
        oldest_missing_age_seconds: oldest_missing_age_seconds.map(|s| s.max(0.0)),
    })
}
