//! Runs the pure saga's reactions: each [`SagaAction`] becomes a command on
//! its stream, appended through the same path as the command API
//! ([`eventstore::aggregate::execute`]) in the caller's transaction. The
//! outcome of a reservation is fed straight back to the saga.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use domain::aggregate::{Order, Payment, Product};
use domain::order::{OrderCommand, OrderError, OrderStatus};
use domain::payment::PaymentCommand;
use domain::product::ProductCommand;
use domain::saga::{react, OrderSaga, SagaAction, SagaInput, SagaPhase, SagaPolicy};
use eventstore::aggregate::{execute, load, CommandError};
use eventstore::{Appended, EventEnvelope, Metadata};
use sqlx::PgConnection;
use uuid::Uuid;

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
/// including the reactions to their outcomes. Returns the saga after it all
/// and the events appended, in order.
pub async fn advance(
    conn: &mut PgConnection,
    saga: Option<OrderSaga>,
    order_id: Uuid,
    input: SagaInput,
    cause: &Cause,
    now: DateTime<Utc>,
    policy: &SagaPolicy,
) -> Result<(Option<OrderSaga>, Vec<EventEnvelope>), ExecuteError> {
    let mut saga = saga;
    let mut appended = Vec::new();
    let inputs_first = if user_cancelled_unseen(conn, saga.as_ref(), order_id).await? {
        // The saga learns of a user's cancel before anything else, so it
        // never reserves for, confirms or charges an order already cancelled.
        if saga.is_none() {
            // Starting for an order cancelled before the saga saw it: record
            // the start without acting on it, then the cancel.
            saga = react(None, order_id, input, now, policy).saga;
            vec![SagaInput::OrderCancelled]
        } else {
            vec![SagaInput::OrderCancelled, input]
        }
    } else {
        vec![input]
    };
    let mut inputs = VecDeque::from(inputs_first);
    while let Some(input) = inputs.pop_front() {
        let reaction = react(saga.as_ref(), order_id, input, now, policy);
        saga = reaction.saga;
        for action in reaction.actions {
            let (events, feedback) = run_action(conn, order_id, action, cause).await?;
            appended.extend(events);
            inputs.extend(feedback);
        }
    }
    Ok((saga, appended))
}

/// Whether the order is cancelled on its stream while the saga has not
/// started or still acts on it (the `OrderCancelled` event may not have
/// reached the saga yet).
pub(crate) async fn user_cancelled_unseen(
    conn: &mut PgConnection,
    saga: Option<&OrderSaga>,
    order_id: Uuid,
) -> Result<bool, ExecuteError> {
    let active =
        saga.is_none_or(|s| matches!(s.phase, SagaPhase::Reserving | SagaPhase::AwaitingPayment));
    if !active {
        return Ok(false);
    }
    let order = load::<Order>(conn, order_id).await?;
    Ok(order.state.status() == Some(OrderStatus::Cancelled))
}

type ActionOutcome = (Vec<EventEnvelope>, Option<SagaInput>);

async fn run_action(
    conn: &mut PgConnection,
    order_id: Uuid,
    action: SagaAction,
    cause: &Cause,
) -> Result<ActionOutcome, ExecuteError> {
    let metadata = cause.metadata();
    let described = format!("{action:?}");
    let events = |appended: Option<Appended>| appended.map(|a| a.events).unwrap_or_default();
    match action {
        SagaAction::Reserve {
            product_id,
            quantity,
        } => {
            let command = ProductCommand::Reserve { order_id, quantity };
            Ok(
                match execute::<Product>(conn, product_id, command, &metadata).await? {
                    Ok(appended) => (events(appended), Some(SagaInput::Reserved { product_id })),
                    Err(refusal) => (
                        vec![],
                        Some(SagaInput::ReservationRefused {
                            product_id,
                            reason: refusal.to_string(),
                        }),
                    ),
                },
            )
        }
        SagaAction::Release { product_id } => {
            let command = ProductCommand::Release { order_id };
            let appended = execute::<Product>(conn, product_id, command, &metadata)
                .await?
                .map_err(|e| refused(&described, &e))?;
            Ok((events(appended), None))
        }
        SagaAction::CommitReservation { product_id } => {
            let command = ProductCommand::Commit { order_id };
            let appended = execute::<Product>(conn, product_id, command, &metadata)
                .await?
                .map_err(|e| refused(&described, &e))?;
            Ok((events(appended), None))
        }
        SagaAction::RequestPayment {
            payment_id,
            amount_cents,
            currency,
            token,
        } => {
            let command = PaymentCommand::Request {
                order_id,
                amount_cents,
                currency,
                token,
            };
            let appended = execute::<Payment>(conn, payment_id, command, &metadata)
                .await?
                .map_err(|e| refused(&described, &e))?;
            Ok((events(appended), None))
        }
        SagaAction::MarkAwaitingPayment { payment_id } => {
            order_action(
                conn,
                order_id,
                OrderCommand::MarkAwaitingPayment { payment_id },
                cause,
                &described,
            )
            .await
        }
        SagaAction::ConfirmOrder { payment_id } => {
            order_action(
                conn,
                order_id,
                OrderCommand::Confirm { payment_id },
                cause,
                &described,
            )
            .await
        }
        SagaAction::RejectOrder { reason } => {
            order_action(
                conn,
                order_id,
                OrderCommand::Reject { reason },
                cause,
                &described,
            )
            .await
        }
        SagaAction::CancelOrder { reason } => {
            let command = OrderCommand::Cancel {
                reason,
                payment_captured: false,
            };
            order_action(conn, order_id, command, cause, &described).await
        }
    }
}

/// Runs a lifecycle command on the order. If the user cancelled the order
/// meanwhile, the whole transaction is retried (the saga then sees the
/// cancel first).
async fn order_action(
    conn: &mut PgConnection,
    order_id: Uuid,
    command: OrderCommand,
    cause: &Cause,
    described: &str,
) -> Result<ActionOutcome, ExecuteError> {
    match execute::<Order>(conn, order_id, command, &cause.metadata()).await? {
        Ok(appended) => Ok((appended.map(|a| a.events).unwrap_or_default(), None)),
        Err(refusal @ (OrderError::InvalidTransition { .. } | OrderError::PaymentCaptured)) => {
            let order = load::<Order>(conn, order_id).await?;
            if order.state.status() == Some(OrderStatus::Cancelled) {
                tracing::info!(%order_id, "order was cancelled meanwhile; retrying with the cancel");
                Err(ExecuteError::CancelledMeanwhile(order_id))
            } else {
                Err(refused(described, &refusal))
            }
        }
        Err(refusal) => Err(refused(described, &refusal)),
    }
}

fn refused(action: &str, error: &dyn std::error::Error) -> ExecuteError {
    ExecuteError::Refused {
        action: action.to_owned(),
        message: error.to_string(),
    }
}
