//! What the console knows about one order: its read-model row, every event
//! it set off (its own stream, its payment's, the products' reservations
//! and releases: whatever shares a correlation id with the order's events),
//! its payment and its saga.

use chrono::{DateTime, Utc};
use domain::saga::OrderSaga;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{ConsoleError, DbContext};

/// The order as the read model has it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderView {
    /// The user who placed it.
    pub user_id: String,
    /// `PENDING`, `AWAITING_PAYMENT`, `CONFIRMED`, `REJECTED`, `CANCELLED`.
    pub status: String,
    /// Why it was rejected or cancelled.
    pub reason: Option<String>,
    /// Its lines, as stored.
    pub lines: serde_json::Value,
    /// Its total.
    pub total_cents: i64,
    /// The order stream's version the row was built from.
    pub version: i64,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}

/// One event of the timeline.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TimelineEvent {
    /// Position in the log.
    pub global_position: i64,
    /// The event's id.
    pub event_id: Uuid,
    /// Its stream.
    pub stream_id: Uuid,
    /// `orders`, `inventory` or `payments`.
    pub stream_type: String,
    /// Version in its stream.
    pub stream_version: i64,
    /// Its type.
    pub event_type: String,
    /// When the log recorded it.
    pub recorded_at: DateTime<Utc>,
    /// Its data.
    pub payload: serde_json::Value,
    /// The command that started it all.
    pub correlation_id: Option<Uuid>,
    /// The command or event that caused it.
    pub causation_id: Option<Uuid>,
}

/// The order's payment (`read.payments`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentView {
    /// `REQUESTED`, `CAPTURED`, `DECLINED`, `REFUNDED`, `FAILED`.
    pub status: String,
    /// Amount.
    pub amount_cents: i64,
    /// Currency.
    pub currency: String,
    /// The provider's charge, once captured.
    pub charge_id: Option<String>,
    /// The provider's refund, once refunded.
    pub refund_id: Option<String>,
    /// The provider's decline code.
    pub decline_code: Option<String>,
    /// Why no capture happened before the deadline.
    pub failure_reason: Option<String>,
    /// The payment stream's version.
    pub version: i64,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// The order's saga (`saga.order_sagas`).
#[derive(Debug, Clone)]
pub struct SagaView {
    /// Its phase column.
    pub phase: String,
    /// The decoded state, when it decodes.
    pub state: Option<OrderSaga>,
    /// The raw state.
    pub raw_state: serde_json::Value,
    /// When the effect runner looks at it next (a call or a deadline).
    pub next_action_at: Option<DateTime<Utc>>,
    /// Provider calls attempted for the current effect.
    pub effect_attempts: i32,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct SagaRow {
    phase: String,
    state: serde_json::Value,
    next_action_at: Option<DateTime<Utc>>,
    effect_attempts: i32,
    updated_at: DateTime<Utc>,
}

/// A parked or re-driven dead letter of the order (or its payment).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LetterRef {
    /// Whose: `saga` or `projector` (the path segment of its page).
    pub source: String,
    /// Its id.
    pub id: i64,
    /// `parked` or `redriven`.
    pub status: String,
    /// Why it was parked.
    pub reason: String,
}

/// Everything about one order.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// The order.
    pub order_id: Uuid,
    /// Its read-model row (`None` while the projector has not caught up).
    pub order: Option<OrderView>,
    /// Its events and those it caused, in log order.
    pub events: Vec<TimelineEvent>,
    /// Its payment, if one was requested.
    pub payment: Option<PaymentView>,
    /// Its saga, if the saga has seen it.
    pub saga: Option<SagaView>,
    /// Dead letters about it (the saga's, and the projector's of its
    /// order and payment streams).
    pub dead_letters: Vec<LetterRef>,
}

impl Timeline {
    /// The event with id `id`, if it is on the timeline.
    pub fn event(&self, id: Uuid) -> Option<&TimelineEvent> {
        self.events.iter().find(|e| e.event_id == id)
    }
}

/// The order's own events, then every event sharing one of their
/// correlation ids from the first of them on (positions only grow, so the
/// scan starts there), in log order.
const EVENTS: &str = "
    WITH own AS (
        SELECT global_position, metadata->>'correlation_id' AS correlation
        FROM eventstore.events WHERE stream_id = $1
    )
    SELECT global_position, event_id, stream_id, stream_type, stream_version, event_type,
           recorded_at, payload,
           (metadata->>'correlation_id')::uuid AS correlation_id,
           (metadata->>'causation_id')::uuid AS causation_id
    FROM eventstore.events
    WHERE stream_id = $1
       OR stream_id = $2
       OR (global_position >= (SELECT min(global_position) FROM own)
           AND metadata->>'correlation_id' IN (SELECT correlation FROM own))
    ORDER BY global_position";

/// Loads the timeline of `order_id`; 404 when neither the log nor the read
/// model knows the order.
#[tracing::instrument(skip(pool))]
pub async fn load(pool: &PgPool, order_id: Uuid) -> Result<Timeline, ConsoleError> {
    let payment_id = domain::payment::payment_id_for(order_id);
    let order: Option<OrderView> = sqlx::query_as(
        "SELECT user_id, status, reason, lines, total_cents, version, placed_at, updated_at
         FROM read.orders WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(pool)
    .await
    .db_context(|| format!("reading order {order_id}"))?;
    let events: Vec<TimelineEvent> = sqlx::query_as(EVENTS)
        .bind(order_id)
        .bind(payment_id)
        .fetch_all(pool)
        .await
        .db_context(|| format!("reading the events of order {order_id}"))?;
    if order.is_none() && !events.iter().any(|e| e.stream_id == order_id) {
        return Err(ConsoleError::NotFound(format!("no order {order_id}")));
    }
    let payment: Option<PaymentView> = sqlx::query_as(
        "SELECT status, amount_cents, currency, charge_id, refund_id, decline_code,
                failure_reason, version, updated_at
         FROM read.payments WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(pool)
    .await
    .db_context(|| format!("reading the payment of order {order_id}"))?;
    let saga: Option<SagaRow> = sqlx::query_as(
        "SELECT phase, state, next_action_at, effect_attempts, updated_at
         FROM saga.order_sagas WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(pool)
    .await
    .db_context(|| format!("reading the saga of order {order_id}"))?;
    let saga = saga.map(|row| SagaView {
        phase: row.phase,
        state: serde_json::from_value(row.state.clone()).ok(),
        raw_state: row.state,
        next_action_at: row.next_action_at,
        effect_attempts: row.effect_attempts,
        updated_at: row.updated_at,
    });
    let dead_letters: Vec<LetterRef> = sqlx::query_as(
        "SELECT 'saga' AS source, id, status, reason FROM saga.dead_letters WHERE order_id = $1
         UNION ALL
         SELECT 'projector', id, status, reason FROM projector.dead_letters
         WHERE stream_id = $1 OR stream_id = $2
         ORDER BY source DESC, id",
    )
    .bind(order_id)
    .bind(payment_id)
    .fetch_all(pool)
    .await
    .db_context(|| format!("reading the dead letters of order {order_id}"))?;
    Ok(Timeline {
        order_id,
        order,
        events,
        payment,
        saga,
        dead_letters,
    })
}
