//! The saga's tables: one row per order, and the processed event ids.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::saga::OrderSaga;
use sqlx::PgConnection;
use uuid::Uuid;

/// A saga as stored, with its bookkeeping.
#[derive(Debug, Clone)]
pub struct SagaRow {
    /// The saga.
    pub saga: OrderSaga,
    /// Provider calls attempted for the current effect.
    pub effect_attempts: i32,
    /// The event that asked for the current effect.
    pub effect_cause: Option<Uuid>,
    /// The originating command's id.
    pub correlation_id: Uuid,
    /// The originating request's trace context.
    pub traceparent: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    state: sqlx::types::Json<OrderSaga>,
    effect_attempts: i32,
    effect_cause: Option<Uuid>,
    correlation_id: Uuid,
    traceparent: Option<String>,
}

/// Records that `event_id` is being handled; `false` if it already was
/// (the caller then changes nothing). Same transaction as the handler's writes.
pub async fn mark_processed(conn: &mut PgConnection, event_id: Uuid) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO saga.processed_events (event_id) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Loads the saga of `order_id` and locks its row until the transaction ends.
pub async fn lock(conn: &mut PgConnection, order_id: Uuid) -> Result<Option<SagaRow>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT state, effect_attempts, effect_cause, correlation_id, traceparent
         FROM saga.order_sagas WHERE order_id = $1 FOR UPDATE",
    )
    .bind(order_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| SagaRow {
        saga: row.state.0,
        effect_attempts: row.effect_attempts,
        effect_cause: row.effect_cause,
        correlation_id: row.correlation_id,
        traceparent: row.traceparent,
    }))
}

/// Inserts or updates the saga row, scheduling the effect runner for
/// `next_action_at`.
pub async fn save(
    conn: &mut PgConnection,
    row: &SagaRow,
    next_action_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    let phase = serde_json::to_value(row.saga.phase).expect("phase serializes");
    sqlx::query(
        "INSERT INTO saga.order_sagas
             (order_id, phase, state, next_action_at, effect_attempts, effect_cause, correlation_id, traceparent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (order_id) DO UPDATE SET
             phase = EXCLUDED.phase, state = EXCLUDED.state, next_action_at = EXCLUDED.next_action_at,
             effect_attempts = EXCLUDED.effect_attempts, effect_cause = EXCLUDED.effect_cause,
             updated_at = now()",
    )
    .bind(row.saga.order_id)
    .bind(phase.as_str().unwrap_or_default())
    .bind(sqlx::types::Json(&row.saga))
    .bind(next_action_at)
    .bind(row.effect_attempts)
    .bind(row.effect_cause)
    .bind(row.correlation_id)
    .bind(&row.traceparent)
    .execute(conn)
    .await?;
    Ok(())
}

/// Claims up to `limit` sagas whose next action is due, leasing them for
/// `lease` so other workers skip them meanwhile. Returns their order ids.
pub async fn claim_due(
    conn: &mut PgConnection,
    limit: i64,
    lease: chrono::Duration,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE saga.order_sagas SET next_action_at = now() + $2
         WHERE order_id IN (
             SELECT order_id FROM saga.order_sagas
             WHERE next_action_at <= now()
             ORDER BY next_action_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED)
         RETURNING order_id",
    )
    .bind(limit)
    .bind(lease)
    .fetch_all(conn)
    .await
}

/// Locks the saga rows of `order_ids` in order-id order (a batch takes
/// them all before any product) and returns their sagas by order id.
pub async fn lock_sagas(
    conn: &mut PgConnection,
    order_ids: &[Uuid],
) -> Result<HashMap<Uuid, OrderSaga>, sqlx::Error> {
    let rows: Vec<(Uuid, sqlx::types::Json<OrderSaga>)> = sqlx::query_as(
        "SELECT order_id, state FROM saga.order_sagas WHERE order_id = ANY($1)
         ORDER BY order_id FOR UPDATE",
    )
    .bind(order_ids)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(order_id, state)| (order_id, state.0))
        .collect())
}

/// Locks the version rows of the product streams `product_ids` in id
/// order. Every saga transaction takes its saga rows first and then, in
/// this order, every product it may write to, so saga transactions (the
/// consumer's lanes and the effect runner) wait for one another instead of
/// deadlocking or losing optimistic races on a popular product. The
/// version rows are the event store's append lock (see
/// `eventstore::append`): while they are held, the streams cannot move on.
pub async fn lock_products(
    conn: &mut PgConnection,
    product_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    eventstore::lock_streams(conn, product_ids).await
}
