//! The saga worker's transactions over the in-memory world, shaped like
//! `Handler::handle` / `handler::apply` / `execute::advance` and the effect
//! runner's `process` / `record`: every decision in them is the real pure
//! code (`domain::saga::react` through `saga::steps`, the aggregates'
//! `decide` / `evolve`, `saga::effects::outcome`); only the I/O is
//! replaced.

use domain::aggregate::{Order, Payment, Product};
use domain::order::OrderStatus;
use domain::saga::{Effect, SagaInput, SagaPolicy};
use eventstore::EventEnvelope;
use saga::effects::{cause_of, EffectSettings, Outcome};
use saga::execute::Cause;
use saga::steps::{self, StreamCommand};
use saga::store::SagaRow;
use uuid::Uuid;

use super::world::Tx;
use super::Knobs;

/// Why a transaction failed (the real worker would retry, then dead-letter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    /// A stream refused an action the saga should never issue.
    Refused(String),
    /// The user cancelled the order meanwhile: retry the transaction.
    CancelledMeanwhile,
}

/// What `apply` did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Applied {
    /// The saga changed (and was saved).
    pub changed: bool,
    /// Events appended.
    pub appended: usize,
}

/// `handler::apply`: feeds `input` to the saga of `order_id`, runs its
/// actions and saves it, in `tx`.
pub fn apply(
    tx: &mut Tx,
    order_id: Uuid,
    input: SagaInput,
    cause: &Cause,
    policy: &SagaPolicy,
    knobs: &Knobs,
) -> Result<Applied, Fail> {
    let now = tx.now;
    let row = tx.saga(order_id);
    let before = row.as_ref().map(|r| r.saga.clone());
    let cancelled = knobs.cancel_check
        && steps::watches_for_cancel(before.as_ref())
        && tx.order_status(order_id) == Some(OrderStatus::Cancelled);
    if !steps::reacts(before.as_ref(), order_id, &input, now, policy) && !cancelled {
        return Ok(Applied::default());
    }
    let metadata = cause.metadata();
    let mut advance = steps::Advance::new(before.clone(), order_id, input, cancelled, now, policy);
    let mut appended: Vec<EventEnvelope> = Vec::new();
    while let Some(action) = advance.next_action() {
        let result = match steps::command_for(order_id, &action) {
            StreamCommand::Product {
                product_id,
                command,
            } => tx
                .execute::<Product>(product_id, command, &metadata)
                .map_err(|e| e.to_string()),
            StreamCommand::Payment {
                payment_id,
                command,
            } => tx
                .execute::<Payment>(payment_id, command, &metadata)
                .map_err(|e| e.to_string()),
            StreamCommand::Order(command) => {
                match tx.execute::<Order>(order_id, command, &metadata) {
                    Err(refusal)
                        if steps::may_be_cancel_race(&refusal)
                            && tx.order_status(order_id) == Some(OrderStatus::Cancelled) =>
                    {
                        return Err(Fail::CancelledMeanwhile);
                    }
                    other => other.map_err(|e| e.to_string()),
                }
            }
        };
        let (events, refusal) = match result {
            Ok(events) => (events, None),
            Err(reason) => (vec![], Some(reason)),
        };
        appended.extend(events);
        let feedback = steps::action_result(&action, refusal)
            .map_err(|reason| Fail::Refused(format!("{action:?} refused: {reason}")))?;
        advance.feed(feedback);
    }
    let Some(saga) = advance.finish() else {
        return Ok(Applied::default());
    };
    if before.as_ref() == Some(&saga) {
        return Ok(Applied::default());
    }
    let row = steps::advanced_row(row, saga, cause, appended.last().map(|e| e.event_id));
    let next = steps::schedule(&row.saga, now);
    tx.save(row, next);
    Ok(Applied {
        changed: true,
        appended: appended.len(),
    })
}

/// The effect runner's first transaction for a claimed saga: the clock's
/// tick, then the call to make, if any.
pub fn process(
    tx: &mut Tx,
    order_id: Uuid,
    policy: &SagaPolicy,
    knobs: &Knobs,
) -> Result<Option<(SagaRow, Effect)>, Fail> {
    let Some(row) = tx.saga(order_id) else {
        return Ok(None);
    };
    apply(
        tx,
        order_id,
        SagaInput::Tick,
        &cause_of(&row),
        policy,
        knobs,
    )?;
    let row = tx.saga(order_id).unwrap_or(row);
    match row.saga.effect.clone() {
        None => {
            let next = steps::schedule(&row.saga, tx.now);
            tx.save(row, next);
            Ok(None)
        }
        Some(effect) => Ok(Some((row, effect))),
    }
}

/// The effect runner's second transaction: the call's outcome on the
/// payment stream and in the saga.
pub fn record(
    tx: &mut Tx,
    order_id: Uuid,
    outcome: Outcome,
    policy: &SagaPolicy,
    settings: &EffectSettings,
    knobs: &Knobs,
) -> Result<Applied, Fail> {
    let Some(row) = tx.saga(order_id) else {
        return Ok(Applied::default());
    };
    let cause = cause_of(&row);
    match outcome {
        Outcome::Record(command, input) => {
            let recorded = tx
                .execute::<Payment>(row.saga.payment_id(), command, &cause.metadata())
                .map_err(|e| Fail::Refused(format!("recording the payment outcome: {e}")))?;
            let mut applied = apply(tx, order_id, input, &cause, policy, knobs)?;
            applied.appended += recorded.len();
            Ok(applied)
        }
        Outcome::Retry(input, delay) => {
            let mut applied = Applied::default();
            if let Some(input) = input {
                applied = apply(tx, order_id, input, &cause, policy, knobs)?;
            }
            let mut row = tx.saga(order_id).unwrap_or(row);
            row.effect_attempts += 1;
            let next = saga::effects::outcome::retry_at(
                settings,
                tx.now,
                delay,
                row.effect_attempts,
                row.saga.deadline,
            );
            tx.save(row, Some(next));
            Ok(applied)
        }
    }
}
