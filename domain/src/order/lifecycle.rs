//! What happens to a placed order: the transitions the saga and the user
//! drive. Repeating a transition that already happened is accepted and
//! changes nothing, so redelivered saga steps are harmless.

use uuid::Uuid;

use super::{Order, OrderError, OrderEvent, OrderState, OrderStatus};

fn placed(state: &OrderState) -> Result<&Order, OrderError> {
    state.order().ok_or(OrderError::NotPlaced)
}

fn refuse(order: &Order, action: &'static str) -> OrderError {
    OrderError::InvalidTransition {
        status: order.status,
        action,
    }
}

pub(super) fn mark_awaiting_payment(
    state: &OrderState,
    payment_id: Uuid,
) -> Result<Vec<OrderEvent>, OrderError> {
    let order = placed(state)?;
    match order.status {
        OrderStatus::Pending => Ok(vec![OrderEvent::OrderAwaitingPayment { payment_id }]),
        OrderStatus::AwaitingPayment if order.payment_id == Some(payment_id) => Ok(vec![]),
        _ => Err(refuse(order, "moved to payment")),
    }
}

pub(super) fn confirm(state: &OrderState, payment_id: Uuid) -> Result<Vec<OrderEvent>, OrderError> {
    let order = placed(state)?;
    match order.status {
        OrderStatus::AwaitingPayment if order.payment_id == Some(payment_id) => {
            Ok(vec![OrderEvent::OrderConfirmed { payment_id }])
        }
        OrderStatus::Confirmed if order.payment_id == Some(payment_id) => Ok(vec![]),
        _ => Err(refuse(order, "confirmed")),
    }
}

pub(super) fn reject(state: &OrderState, reason: String) -> Result<Vec<OrderEvent>, OrderError> {
    let order = placed(state)?;
    match order.status {
        OrderStatus::Pending => Ok(vec![OrderEvent::OrderRejected { reason }]),
        OrderStatus::Rejected => Ok(vec![]),
        _ => Err(refuse(order, "rejected")),
    }
}

pub(super) fn cancel(
    state: &OrderState,
    reason: String,
    payment_captured: bool,
) -> Result<Vec<OrderEvent>, OrderError> {
    let order = placed(state)?;
    match order.status {
        OrderStatus::Cancelled => Ok(vec![]),
        OrderStatus::Confirmed => Err(OrderError::PaymentCaptured),
        _ if payment_captured => Err(OrderError::PaymentCaptured),
        OrderStatus::Pending | OrderStatus::AwaitingPayment => {
            Ok(vec![OrderEvent::OrderCancelled { reason }])
        }
        OrderStatus::Rejected => Err(refuse(order, "cancelled")),
    }
}

/// Folds a lifecycle event into a placed order.
pub(super) fn evolve(mut order: Order, event: &OrderEvent) -> Order {
    match event {
        OrderEvent::OrderPlaced { .. } => {}
        OrderEvent::OrderAwaitingPayment { payment_id } => {
            order.status = OrderStatus::AwaitingPayment;
            order.payment_id = Some(*payment_id);
        }
        OrderEvent::OrderConfirmed { payment_id } => {
            order.status = OrderStatus::Confirmed;
            order.payment_id = Some(*payment_id);
        }
        OrderEvent::OrderRejected { reason } => {
            order.status = OrderStatus::Rejected;
            order.reason = Some(reason.clone());
        }
        OrderEvent::OrderCancelled { reason } => {
            order.status = OrderStatus::Cancelled;
            order.reason = Some(reason.clone());
        }
    }
    order
}
