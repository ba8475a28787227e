//! The pure bookkeeping around the saga's state machine: whether an input
//! needs any work, the order in which a reaction's actions run and their
//! outcomes are fed back, the command each action becomes, and how the
//! saga's row is updated. The handler ([`crate::handler`],
//! [`crate::execute`]) runs these against Postgres; the seeded simulator
//! (`tests/simulation.rs`) runs the same functions against an in-memory
//! world, so what it checks is what the worker does.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use domain::order::{OrderCommand, OrderError};
use domain::payment::PaymentCommand;
use domain::product::ProductCommand;
use domain::saga::{react, OrderSaga, SagaAction, SagaInput, SagaPhase, SagaPolicy};
use uuid::Uuid;

use crate::execute::Cause;
use crate::store::SagaRow;

/// Whether the saga would change or act on `input` (the pure reaction,
/// without running anything).
pub fn reacts(
    saga: Option<&OrderSaga>,
    order_id: Uuid,
    input: &SagaInput,
    now: DateTime<Utc>,
    policy: &SagaPolicy,
) -> bool {
    let reaction = react(saga, order_id, input.clone(), now, policy);
    !reaction.actions.is_empty() || reaction.saga.as_ref() != saga
}

/// Whether a user's cancel on the order stream matters to the saga: it has
/// not started, or still acts on the order (the `OrderCancelled` event may
/// not have reached it yet).
pub fn watches_for_cancel(saga: Option<&OrderSaga>) -> bool {
    saga.is_none_or(|s| matches!(s.phase, SagaPhase::Reserving | SagaPhase::AwaitingPayment))
}

/// One input's reaction run to the end: the actions in the order they are
/// to run, each outcome fed back ([`Advance::feed`]) before the next is
/// asked for, and the reactions to those outcomes after them.
#[derive(Debug)]
pub struct Advance<'p> {
    saga: Option<OrderSaga>,
    order_id: Uuid,
    inputs: VecDeque<SagaInput>,
    actions: VecDeque<SagaAction>,
    now: DateTime<Utc>,
    policy: &'p SagaPolicy,
}

impl<'p> Advance<'p> {
    /// Starts feeding `input` to `saga`. `cancelled_unseen`: the order is
    /// cancelled on its stream and [`watches_for_cancel`] — the saga then
    /// takes the cancel in first, so it never reserves for, confirms or
    /// charges an order already cancelled.
    pub fn new(
        saga: Option<OrderSaga>,
        order_id: Uuid,
        input: SagaInput,
        cancelled_unseen: bool,
        now: DateTime<Utc>,
        policy: &'p SagaPolicy,
    ) -> Self {
        let (saga, inputs) = match (cancelled_unseen, saga) {
            // Starting for an order cancelled before the saga saw it: record
            // the start without acting on it, then the cancel.
            (true, None) => (
                react(None, order_id, input, now, policy).saga,
                vec![SagaInput::OrderCancelled],
            ),
            (true, saga) => (saga, vec![SagaInput::OrderCancelled, input]),
            (false, saga) => (saga, vec![input]),
        };
        Self {
            saga,
            order_id,
            inputs: inputs.into(),
            actions: VecDeque::new(),
            now,
            policy,
        }
    }

    /// The next action to run, reacting to queued inputs as needed; `None`
    /// when everything has run.
    pub fn next_action(&mut self) -> Option<SagaAction> {
        loop {
            if let Some(action) = self.actions.pop_front() {
                return Some(action);
            }
            let input = self.inputs.pop_front()?;
            let reaction = react(
                self.saga.as_ref(),
                self.order_id,
                input,
                self.now,
                self.policy,
            );
            self.saga = reaction.saga;
            self.actions.extend(reaction.actions);
        }
    }

    /// What the last action's command taught the saga (see [`action_result`]).
    pub fn feed(&mut self, feedback: Option<SagaInput>) {
        self.inputs.extend(feedback);
    }

    /// The saga after it all.
    pub fn finish(self) -> Option<OrderSaga> {
        self.saga
    }
}

/// A saga action as a command on its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamCommand {
    /// On a product stream.
    Product {
        /// The product.
        product_id: Uuid,
        /// What to do.
        command: ProductCommand,
    },
    /// On the order's payment stream.
    Payment {
        /// The payment.
        payment_id: Uuid,
        /// What to do.
        command: PaymentCommand,
    },
    /// On the order's stream.
    Order(OrderCommand),
}

/// The command `action` of the saga of `order_id` becomes.
pub fn command_for(order_id: Uuid, action: &SagaAction) -> StreamCommand {
    let product = |product_id: Uuid, command| StreamCommand::Product {
        product_id,
        command,
    };
    match action.clone() {
        SagaAction::Reserve {
            product_id,
            quantity,
        } => product(product_id, ProductCommand::Reserve { order_id, quantity }),
        SagaAction::Release { product_id } => {
            product(product_id, ProductCommand::Release { order_id })
        }
        SagaAction::CommitReservation { product_id } => {
            product(product_id, ProductCommand::Commit { order_id })
        }
        SagaAction::RequestPayment {
            payment_id,
            amount_cents,
            currency,
            token,
        } => StreamCommand::Payment {
            payment_id,
            command: PaymentCommand::Request {
                order_id,
                amount_cents,
                currency,
                token,
            },
        },
        SagaAction::MarkAwaitingPayment { payment_id } => {
            StreamCommand::Order(OrderCommand::MarkAwaitingPayment { payment_id })
        }
        SagaAction::ConfirmOrder { payment_id } => {
            StreamCommand::Order(OrderCommand::Confirm { payment_id })
        }
        SagaAction::RejectOrder { reason } => StreamCommand::Order(OrderCommand::Reject { reason }),
        SagaAction::CancelOrder { reason } => StreamCommand::Order(OrderCommand::Cancel {
            reason,
            payment_captured: false,
        }),
    }
}

/// What the saga learns from `action`'s command, accepted (`refusal` is
/// `None`) or refused with a reason: a reservation's outcome is fed back;
/// any other refusal is `Err` (an action the saga should never issue in
/// that state), unless [`may_be_cancel_race`] says otherwise.
pub fn action_result(
    action: &SagaAction,
    refusal: Option<String>,
) -> Result<Option<SagaInput>, String> {
    match (action, refusal) {
        (SagaAction::Reserve { product_id, .. }, None) => Ok(Some(SagaInput::Reserved {
            product_id: *product_id,
        })),
        (SagaAction::Reserve { product_id, .. }, Some(reason)) => {
            Ok(Some(SagaInput::ReservationRefused {
                product_id: *product_id,
                reason,
            }))
        }
        (_, None) => Ok(None),
        (_, Some(reason)) => Err(reason),
    }
}

/// Whether an order command's refusal may be a user's cancel that won the
/// race for the order stream: if the order is now cancelled, the whole
/// transaction is retried and the saga sees the cancel first.
pub fn may_be_cancel_race(refusal: &OrderError) -> bool {
    matches!(
        refusal,
        OrderError::InvalidTransition { .. } | OrderError::PaymentCaptured
    )
}

/// The saga's row after it advanced to `saga` because of `cause`: a new
/// effect starts with no attempts, caused by the last event appended (or
/// by `cause` if none was).
pub fn advanced_row(
    row: Option<SagaRow>,
    saga: OrderSaga,
    cause: &Cause,
    last_appended: Option<Uuid>,
) -> SagaRow {
    let before_effect = row.as_ref().and_then(|r| r.saga.effect.clone());
    let mut row = row.unwrap_or_else(|| SagaRow {
        saga: saga.clone(),
        effect_attempts: 0,
        effect_cause: None,
        correlation_id: cause.correlation_id,
        traceparent: cause.traceparent.clone(),
    });
    if before_effect != saga.effect {
        row.effect_attempts = 0;
        row.effect_cause = Some(last_appended.unwrap_or(cause.event_id));
    }
    row.saga = saga;
    row
}

/// When the effect runner should look at `saga` next.
pub fn schedule(saga: &OrderSaga, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if saga.effect.is_some() {
        Some(now)
    } else {
        saga.deadline
    }
}
