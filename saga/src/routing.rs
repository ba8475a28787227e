//! Which saga an event concerns, and as what input.

use domain::order::OrderEvent;
use domain::payment::PaymentEvent;
use domain::product::ProductEvent;
use domain::saga::SagaInput;
use domain::{DomainEvent, EventDecodeError};
use eventstore::EventEnvelope;
use uuid::Uuid;

/// The saga input an event means, and for which order; `None` for events
/// the saga does not react to.
pub fn route(event: &EventEnvelope) -> Result<Option<(Uuid, SagaInput)>, EventDecodeError> {
    Ok(match event.stream_type.as_str() {
        t if t == OrderEvent::STREAM_TYPE => match event.decode::<OrderEvent>()? {
            OrderEvent::OrderPlaced {
                lines,
                total_cents,
                payment_token,
                ..
            } => Some((
                event.stream_id,
                SagaInput::OrderPlaced {
                    lines,
                    total_cents,
                    payment_token,
                },
            )),
            OrderEvent::OrderCancelled { .. } => Some((event.stream_id, SagaInput::OrderCancelled)),
            OrderEvent::OrderAwaitingPayment { .. }
            | OrderEvent::OrderConfirmed { .. }
            | OrderEvent::OrderRejected { .. } => None,
        },
        t if t == ProductEvent::STREAM_TYPE => match event.decode::<ProductEvent>()? {
            ProductEvent::StockReserved { order_id, .. } => Some((
                order_id,
                SagaInput::Reserved {
                    product_id: event.stream_id,
                },
            )),
            ProductEvent::ProductRegistered { .. }
            | ProductEvent::ProductRestocked { .. }
            | ProductEvent::ReservationReleased { .. }
            | ProductEvent::ReservationCommitted { .. } => None,
        },
        t if t == PaymentEvent::STREAM_TYPE => {
            let payment = event.decode::<PaymentEvent>()?;
            let order_id = payment.order_id();
            let input = match payment {
                PaymentEvent::PaymentRequested { .. } => None,
                PaymentEvent::PaymentCaptured { charge_id, .. } => {
                    Some(SagaInput::PaymentCaptured { charge_id })
                }
                PaymentEvent::PaymentDeclined { code, .. } => {
                    Some(SagaInput::PaymentDeclined { code })
                }
                PaymentEvent::PaymentRefunded { .. } => Some(SagaInput::PaymentRefunded),
                PaymentEvent::PaymentFailed { reason, .. } => {
                    Some(SagaInput::PaymentFailed { reason })
                }
            };
            input.map(|input| (order_id, input))
        }
        other => {
            return Err(EventDecodeError::UnknownType {
                stream_type: other.to_owned(),
                event_type: event.event_type.clone(),
            })
        }
    })
}
