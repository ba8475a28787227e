//! One event in, one transaction out: dedup by event id, the saga's
//! reaction, its actions appended, the saga row saved — all or nothing.
//! Or several events in one transaction ([`Handler::handle_batch`]), each
//! deduped and applied in turn, committed together up to the first failure.

use chrono::{DateTime, Utc};
use domain::saga::{SagaInput, SagaPolicy};
use eventstore::EventEnvelope;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;
use uuid::Uuid;

use crate::execute::{advance, user_cancelled_unseen, Cause, ExecuteError};
use crate::routing::route;
use crate::steps::{self, reacts, schedule};
use crate::store;

/// Attempts per event when other writers keep winning optimistic races.
const CONFLICT_ATTEMPTS: u32 = 10;

/// What handling an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// The saga does not react to this event.
    Ignored,
    /// Already handled before (a redelivery): nothing changed.
    Duplicate,
    /// Handled; the saga may now have a provider call due.
    Applied {
        /// The order.
        order_id: Uuid,
        /// Whether the effect runner has work for this saga now.
        effect_due: bool,
    },
}

/// What handling a batch in one transaction did.
#[derive(Debug)]
pub struct BatchHandled {
    /// What each event committed did, in order: a prefix of the batch.
    pub handled: Vec<Handled>,
    /// Why the event after that prefix failed (it and the rest of the
    /// batch were not committed); `None` if the whole batch was.
    pub failed: Option<HandlerError>,
}

/// Why an event could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event's payload is not what its type says.
    #[error("undecodable event: {0}")]
    Decode(#[from] domain::EventDecodeError),
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Running the saga's actions failed.
    #[error(transparent)]
    Execute(#[from] ExecuteError),
}

impl HandlerError {
    /// Whether the database is unreachable (wait, don't dead-letter).
    pub fn is_unavailable(&self) -> bool {
        match self {
            HandlerError::Database(error) => platform::db::is_unavailable(error),
            HandlerError::Execute(ExecuteError::Command(
                eventstore::aggregate::CommandError::Read { source, .. },
            )) => platform::db::is_unavailable(source),
            HandlerError::Execute(ExecuteError::Command(
                eventstore::aggregate::CommandError::Append(eventstore::AppendError::Database {
                    source,
                    ..
                }),
            )) => platform::db::is_unavailable(source),
            _ => false,
        }
    }
}

/// Handles saga events against the database.
pub struct Handler {
    pool: PgPool,
    policy: SagaPolicy,
}

impl Handler {
    /// A handler deciding with `policy`.
    pub fn new(pool: PgPool, policy: SagaPolicy) -> Self {
        Self { pool, policy }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The saga policy.
    pub fn policy(&self) -> &SagaPolicy {
        &self.policy
    }

    /// Handles one event exactly once, retrying lost optimistic races.
    pub async fn handle(&self, event: &EventEnvelope) -> Result<Handled, HandlerError> {
        self.handle_retrying(event)
            .instrument(event_span(event))
            .await
    }

    /// Handles `events` in order in one transaction, each exactly once.
    /// Stops at the first that fails: the events before it are committed
    /// (`handled`), it and the rest are not (`failed`). No retries: the
    /// caller handles the failed one alone. `Err` if nothing was committed
    /// because the transaction itself failed.
    pub async fn handle_batch(
        &self,
        events: &[&EventEnvelope],
    ) -> Result<BatchHandled, HandlerError> {
        let routed: Vec<_> = events.iter().map(|event| route(event)).collect();
        let inputs = routed
            .iter()
            .filter_map(|r| r.as_ref().ok().and_then(Option::as_ref));
        let orders: Vec<Uuid> = inputs.clone().map(|(order_id, _)| *order_id).collect();
        let mut tx = self.pool.begin().await?;
        let sagas = store::lock_sagas(&mut tx, &orders).await?;
        // Only the products of sagas that will act: an event the saga has
        // already taken in (the echo of what it appended itself) locks none,
        // so it never waits behind other orders of a popular product.
        let now = Utc::now();
        let products: Vec<Uuid> = inputs
            .filter(|(order_id, input)| {
                reacts(sagas.get(order_id), *order_id, input, now, &self.policy)
            })
            .flat_map(|(order_id, input)| {
                let lines = sagas.get(order_id).map(|saga| saga.lines.as_slice());
                (lines.into_iter().flatten().map(|line| line.product_id))
                    .chain(placed_products(input))
            })
            .collect();
        store::lock_products(&mut tx, &products).await?;
        let mut handled = Vec::with_capacity(events.len());
        let mut failed = None;
        for (index, (event, routed)) in events.iter().zip(routed).enumerate() {
            if index > 0 {
                sqlx::query("SAVEPOINT saga_event")
                    .execute(&mut *tx)
                    .await?;
            }
            let outcome = async {
                match routed? {
                    Some((order_id, input)) => {
                        self.handle_in(&mut tx, event, order_id, input).await
                    }
                    None => Ok(Handled::Ignored),
                }
            }
            .instrument(event_span(event))
            .await;
            match outcome {
                Ok(outcome) => handled.push(outcome),
                Err(error) => {
                    if index > 0 {
                        sqlx::query("ROLLBACK TO SAVEPOINT saga_event")
                            .execute(&mut *tx)
                            .await?;
                    }
                    failed = Some(error);
                    break;
                }
            }
        }
        if !handled.is_empty() {
            tx.commit().await?;
        }
        Ok(BatchHandled { handled, failed })
    }

    async fn handle_retrying(&self, event: &EventEnvelope) -> Result<Handled, HandlerError> {
        let Some((order_id, input)) = route(event)? else {
            return Ok(Handled::Ignored);
        };
        let mut attempt = 1;
        loop {
            match self.try_handle(event, order_id, input.clone()).await {
                Err(HandlerError::Execute(error))
                    if error.is_conflict() && attempt < CONFLICT_ATTEMPTS =>
                {
                    tracing::debug!(%error, attempt, "lost a race; retrying");
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn try_handle(
        &self,
        event: &EventEnvelope,
        order_id: Uuid,
        input: SagaInput,
    ) -> Result<Handled, HandlerError> {
        let mut tx = self.pool.begin().await?;
        let handled = self.handle_in(&mut tx, event, order_id, input).await?;
        if handled != Handled::Duplicate {
            tx.commit().await?;
        }
        Ok(handled)
    }

    /// Dedups `event` and applies it, in the caller's transaction.
    async fn handle_in(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope,
        order_id: Uuid,
        input: SagaInput,
    ) -> Result<Handled, HandlerError> {
        if !store::mark_processed(conn, event.event_id).await? {
            tracing::debug!("already processed; skipping");
            return Ok(Handled::Duplicate);
        }
        let cause = Cause::of(event);
        let effect_due = apply(conn, order_id, input, &cause, Utc::now(), &self.policy).await?;
        Ok(Handled::Applied {
            order_id,
            effect_due,
        })
    }
}

/// The products an order being placed will reserve.
fn placed_products(input: &SagaInput) -> impl Iterator<Item = Uuid> + '_ {
    let lines = match input {
        SagaInput::OrderPlaced { lines, .. } => lines.as_slice(),
        _ => &[],
    };
    lines.iter().map(|line| line.product_id)
}

/// The span of handling one event, with its ids and trace (a consumer
/// span in the event's trace when spans are exported).
fn event_span(event: &EventEnvelope) -> tracing::Span {
    let span = tracing::info_span!(
        "handle",
        otel.kind = "consumer",
        event_id = %event.event_id,
        event_type = %event.event_type,
        correlation_id = %event.metadata.correlation_id,
        causation_id = %event.metadata.causation_id,
        trace_id = eventstore::trace::trace_id(event.metadata.traceparent.as_deref()).unwrap_or(""),
    );
    platform::otel::set_parent(&span, event.metadata.traceparent.as_deref());
    span
}

/// Locks the saga of `order_id` (and then the products it may write to,
/// see [`store::lock_products`]), feeds it `input`, runs the actions and
/// saves it, in the caller's transaction. Returns whether a provider call
/// is due now.
pub async fn apply(
    conn: &mut PgConnection,
    order_id: Uuid,
    input: SagaInput,
    cause: &Cause,
    now: DateTime<Utc>,
    policy: &SagaPolicy,
) -> Result<bool, HandlerError> {
    let row = store::lock(conn, order_id).await?;
    let before = row.as_ref().map(|r| r.saga.clone());
    // Nothing to do (a redelivered echo, a tick before any deadline): no
    // product is locked and nothing is written, unless the user cancelled
    // the order meanwhile, which the saga takes in first.
    if !reacts(before.as_ref(), order_id, &input, now, policy)
        && !user_cancelled_unseen(conn, before.as_ref(), order_id).await?
    {
        return Ok(false);
    }
    let products: Vec<Uuid> = (row.iter().flat_map(|r| &r.saga.lines))
        .map(|line| line.product_id)
        .chain(placed_products(&input))
        .collect();
    store::lock_products(conn, &products).await?;
    let (saga, appended) =
        advance(conn, before.clone(), order_id, input, cause, now, policy).await?;
    let Some(saga) = saga else {
        tracing::debug!(%order_id, "no saga for this order; ignoring");
        return Ok(false);
    };
    if before.as_ref() == Some(&saga) {
        return Ok(false);
    }
    let last_appended = appended.last().map(|e| e.event_id);
    let row = steps::advanced_row(row, saga, cause, last_appended);
    let next = schedule(&row.saga, now);
    store::save(conn, &row, next).await?;
    tracing::info!(%order_id, phase = ?row.saga.phase, effect = ?row.saga.effect, appended = appended.len(), "saga advanced");
    Ok(row.saga.effect.is_some())
}
