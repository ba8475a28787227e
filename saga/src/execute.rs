//! Runs the pure saga's reactions: each [`SagaAction`] becomes a command on
//! its stream, appended through the same path as the command API
//! ([`eventstore::aggregate::execute`]) in the caller's transaction. The
//! outcome of a reservation is fed straight back to the saga.

use chrono::{DateTime, Utc};
use domain::aggregate::{Order, Payment, Product};
use domain::order::OrderStatus;
use domain::saga::{OrderSaga, SagaAction, SagaInput, SagaPolicy};
use eventstore::aggregate::{execute, load, CommandError};
use eventstore::{Appended, EventEnvelope, Metadata};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::steps::{self, StreamCommand};

/// What caused the saga to act: its appended events name it as causation
/// and share its correlation id and trace.
#[derive(Debug, Clone)]
pub struct Cause {
    /// The triggering event (or the effect's requesting event).
    pub event_id: Uuid,
    /// The originating command's id.
    pub correlation_id: Uuid,
    /// The originating request's trace context.
    pub traceparent: Option<String>,
}

impl Cause {
    /// The cause of everything an event triggers.
    pub fn of(event: &EventEnvelope) -> Self {
        Self {
            event_id: event.event_id,
            correlation_id: event.metadata.correlation_id,
            traceparent: event.metadata.traceparent.clone(),
        }
    }

    /// Metadata of the events appended because of this cause.
    pub fn metadata(&self) -> Metadata {
        Metadata {
            correlation_id: self.correlation_id,
            causation_id: self.event_id,
            traceparent: self.traceparent.clone(),
            idempotency_key: None,
        }
    }
}

/// Why running a reaction failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// Loading or appending failed (a conflict is worth retrying).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The user cancelled the order while the saga was acting on it: the
    /// transaction must be retried, and the saga will see the cancel first.
    #[error("order {0} was cancelled meanwhile")]
    CancelledMeanwhile(Uuid),
    /// A stream refused an action the saga should never issue in that state.
    #[error("{action} refused: {message}")]
    Refused {
        /// The action.
        action: String,
        /// The domain's reason.
        message: String,
    },
}

impl ExecuteError {
    /// Whether retrying the whole transaction may succeed (another writer
    /// won an optimistic race).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            ExecuteError::CancelledMeanwhile(_)
                | ExecuteError::Command(CommandError::Append(
                    eventstore::AppendError::Conflict { .. }
                ))
        )
    }
}

/// Feeds `input` to the saga of `order_id` and runs every resulting action,
/// including the reactions to their outcomes (in the order
/// [`steps::Advance`] gives). Returns the saga after it all and the events
/// appended, in order.
pub async fn advance(
    conn: &mut PgConnection,
    saga: Option<OrderSaga>,
    order_id: Uuid,
    input: SagaInput,
    cause: &Cause,
    now: DateTime<Utc>,
    policy: &SagaPolicy,
) -> Result<(Option<OrderSaga>, Vec<EventEnvelope>), ExecuteError> {
    let cancelled = user_cancelled_unseen(conn, saga.as_ref(), order_id).await?;
    let mut advance = steps::Advance::new(saga, order_id, input, cancelled, now, policy);
    let mut appended = Vec::new();
    while let Some(action) = advance.next_action() {
        let (events, feedback) = run_action(conn, order_id, action, cause).await?;
        appended.extend(events);
        advance.feed(feedback);
    }
    Ok((advance.finish(), appended))
}

/// Whether the order is cancelled on its stream while the saga has not
/// started or still acts on it (see [`steps::watches_for_cancel`]).
pub(crate) async fn user_cancelled_unseen(
    conn: &mut PgConnection,
    saga: Option<&OrderSaga>,
    order_id: Uuid,
) -> Result<bool, ExecuteError> {
    if !steps::watches_for_cancel(saga) {
        return Ok(false);
    }
    let order = load::<Order>(conn, order_id).await?;
    Ok(order.state.status() == Some(OrderStatus::Cancelled))
}

type ActionOutcome = (Vec<EventEnvelope>, Option<SagaInput>);

/// Runs `action` as the command [`steps::command_for`] makes of it and
/// turns the result into feedback ([`steps::action_result`]).
async fn run_action(
    conn: &mut PgConnection,
    order_id: Uuid,
    action: SagaAction,
    cause: &Cause,
) -> Result<ActionOutcome, ExecuteError> {
    let metadata = cause.metadata();
    let accepted =
        |appended: Option<Appended>| (appended.map(|a| a.events).unwrap_or_default(), None);
    let refused = |error: &dyn std::error::Error| (vec![], Some(error.to_string()));
    let (events, refusal) = match steps::command_for(order_id, &action) {
        StreamCommand::Product {
            product_id,
            command,
        } => match execute::<Product>(conn, product_id, command, &metadata).await? {
            Ok(appended) => accepted(appended),
            Err(refusal) => refused(&refusal),
        },
        StreamCommand::Payment {
            payment_id,
            command,
        } => match execute::<Payment>(conn, payment_id, command, &metadata).await? {
            Ok(appended) => accepted(appended),
            Err(refusal) => refused(&refusal),
        },
        StreamCommand::Order(command) => {
            match execute::<Order>(conn, order_id, command, &metadata).await? {
                Ok(appended) => accepted(appended),
                Err(refusal) if steps::may_be_cancel_race(&refusal) => {
                    let order = load::<Order>(conn, order_id).await?;
                    if order.state.status() == Some(OrderStatus::Cancelled) {
                        tracing::info!(%order_id, "order was cancelled meanwhile; retrying with the cancel");
                        return Err(ExecuteError::CancelledMeanwhile(order_id));
                    }
                    refused(&refusal)
                }
                Err(refusal) => refused(&refusal),
            }
        }
    };
    let feedback =
        steps::action_result(&action, refusal).map_err(|message| ExecuteError::Refused {
            action: format!("{action:?}"),
            message,
        })?;
    Ok((events, feedback))
}
