//! Saga-like event sequences appended to the real log: what the saga worker
//! writes to the order, inventory and payment streams down each path.

use domain::order::OrderEvent;
use domain::payment::{payment_id_for, PaymentEvent};
use domain::product::ProductEvent;
use eventstore::{EventEnvelope, NewEvent};
use uuid::Uuid;

use super::Harness;

/// How an order's saga ends (or where it stops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Reserved, paid, sold, CONFIRMED.
    Confirmed,
    /// Reserved, payment declined, released, CANCELLED.
    Declined,
    /// The first line reserved, the last one short: released, REJECTED.
    Rejected,
    /// Reserved, awaiting payment, cancelled by the user, released, payment voided.
    UserCancelled,
    /// Payment failed at its deadline, CANCELLED, then captured late and refunded.
    LateCaptureRefunded,
    /// Reserved and still awaiting the payment's answer.
    AwaitingPayment,
}

/// Reason of a declined order.
pub const DECLINED_REASON: &str = "payment declined (card_declined)";
/// Reason of an order cancelled by its user.
pub const USER_REASON: &str = "cancelled by user";
/// Reason of an order whose payment timed out.
pub const TIMEOUT_REASON: &str = "payment timed out";
/// Failure reason of a payment that got no answer in time.
pub const DEADLINE_FAILURE: &str = "no capture before the deadline";
/// Failure reason of a payment voided by a cancellation.
pub const VOID_FAILURE: &str = "voided: order cancelled";

/// The reason of an order rejected on `product`.
pub fn rejected_reason(product: Uuid) -> String {
    format!("insufficient stock for product {product} (line 2)")
}

/// The provider's charge id of an order's payment.
pub fn charge_id(order: Uuid) -> String {
    format!("ch_{}", order.simple())
}

/// The provider's refund id of an order's payment.
pub fn refund_id(order: Uuid) -> String {
    format!("re_{}", order.simple())
}

impl Harness {
    /// Appends one order event.
    pub async fn order_event(&self, order: Uuid, event: OrderEvent) -> EventEnvelope {
        self.one("orders", order, NewEvent::from_domain(&event))
            .await
    }

    /// Appends one product event.
    pub async fn product_event(&self, product: Uuid, event: ProductEvent) -> EventEnvelope {
        self.one("inventory", product, NewEvent::from_domain(&event))
            .await
    }

    /// Appends one event to `order`'s payment stream.
    pub async fn payment_event(&self, order: Uuid, event: PaymentEvent) -> EventEnvelope {
        self.one(
            "payments",
            payment_id_for(order),
            NewEvent::from_domain(&event),
        )
        .await
    }

    async fn one(&self, stream_type: &str, id: Uuid, event: NewEvent) -> EventEnvelope {
        self.append(stream_type, id, &[event]).await.remove(0)
    }

    /// Places `order` with `lines` of `(product, quantity, unit price)` and
    /// appends what the saga would write down `path`. The products must be
    /// registered with enough stock. Returns the events in append order.
    pub async fn saga(
        &self,
        order: Uuid,
        user: &str,
        lines: &[(Uuid, i64, i64)],
        path: Path,
    ) -> Vec<EventEnvelope> {
        let mut events = vec![self.place_order(order, user, lines).await];
        let reserved = if path == Path::Rejected {
            &lines[..lines.len() - 1]
        } else {
            lines
        };
        for &(product, quantity, _) in reserved {
            let event = ProductEvent::StockReserved {
                order_id: order,
                quantity,
            };
            events.push(self.product_event(product, event).await);
        }
        if path == Path::Rejected {
            let short = lines[lines.len() - 1].0;
            events.extend(self.release(order, reserved).await);
            let reason = rejected_reason(short);
            events.push(
                self.order_event(order, OrderEvent::OrderRejected { reason })
                    .await,
            );
            return events;
        }
        let payment_id = payment_id_for(order);
        events.push(
            self.order_event(order, OrderEvent::OrderAwaitingPayment { payment_id })
                .await,
        );
        let amount_cents = lines.iter().map(|(_, q, p)| q * p).sum();
        let requested = PaymentEvent::PaymentRequested {
            order_id: order,
            amount_cents,
            currency: "EUR".to_owned(),
            token: "tok_test".to_owned(),
        };
        events.push(self.payment_event(order, requested).await);
        events.extend(self.finish(order, lines, path).await);
        events
    }

    /// The saga's steps after the payment was requested.
    async fn finish(
        &self,
        order: Uuid,
        lines: &[(Uuid, i64, i64)],
        path: Path,
    ) -> Vec<EventEnvelope> {
        let mut events = Vec::new();
        let order_id = order;
        match path {
            Path::Confirmed => {
                let charge_id = charge_id(order);
                let captured = PaymentEvent::PaymentCaptured {
                    order_id,
                    charge_id,
                };
                events.push(self.payment_event(order, captured).await);
                for &(product, quantity, _) in lines {
                    let event = ProductEvent::ReservationCommitted { order_id, quantity };
                    events.push(self.product_event(product, event).await);
                }
                let payment_id = payment_id_for(order);
                events.push(
                    self.order_event(order, OrderEvent::OrderConfirmed { payment_id })
                        .await,
                );
            }
            Path::Declined => {
                let code = "card_declined".to_owned();
                events.push(
                    self.payment_event(order, PaymentEvent::PaymentDeclined { order_id, code })
                        .await,
                );
                events.extend(self.release(order, lines).await);
                events.push(self.cancel(order, DECLINED_REASON).await);
            }
            Path::UserCancelled => {
                events.push(self.cancel(order, USER_REASON).await);
                events.extend(self.release(order, lines).await);
                let reason = VOID_FAILURE.to_owned();
                events.push(
                    self.payment_event(order, PaymentEvent::PaymentFailed { order_id, reason })
                        .await,
                );
            }
            Path::LateCaptureRefunded => {
                let reason = DEADLINE_FAILURE.to_owned();
                events.push(
                    self.payment_event(order, PaymentEvent::PaymentFailed { order_id, reason })
                        .await,
                );
                events.extend(self.release(order, lines).await);
                events.push(self.cancel(order, TIMEOUT_REASON).await);
                let charge_id = charge_id(order);
                let captured = PaymentEvent::PaymentCaptured {
                    order_id,
                    charge_id: charge_id.clone(),
                };
                events.push(self.payment_event(order, captured).await);
                let refunded = PaymentEvent::PaymentRefunded {
                    order_id,
                    charge_id,
                    refund_id: refund_id(order),
                };
                events.push(self.payment_event(order, refunded).await);
            }
            Path::AwaitingPayment | Path::Rejected => {}
        }
        events
    }

    async fn release(&self, order_id: Uuid, lines: &[(Uuid, i64, i64)]) -> Vec<EventEnvelope> {
        let mut events = Vec::new();
        for &(product, quantity, _) in lines {
            let event = ProductEvent::ReservationReleased { order_id, quantity };
            events.push(self.product_event(product, event).await);
        }
        events
    }

    async fn cancel(&self, order: Uuid, reason: &str) -> EventEnvelope {
        let reason = reason.to_owned();
        self.order_event(order, OrderEvent::OrderCancelled { reason })
            .await
    }

    /// Two products and one order down every [`Path`] over them.
    pub async fn saga_workload(&self) -> SagaWorkload {
        let (p1, p2) = (Uuid::now_v7(), Uuid::now_v7());
        let mut events = vec![
            self.register(p1, "saga lamp", 1000, 10).await,
            self.register(p2, "saga bulb", 500, 5).await,
        ];
        let plans = [
            (Path::Confirmed, vec![(p1, 2, 1000), (p2, 1, 500)]),
            (Path::Declined, vec![(p1, 3, 1000)]),
            (Path::Rejected, vec![(p1, 1, 1000), (p2, 9, 500)]),
            (Path::UserCancelled, vec![(p2, 2, 500)]),
            (Path::LateCaptureRefunded, vec![(p1, 1, 1000)]),
            (Path::AwaitingPayment, vec![(p2, 1, 500)]),
        ];
        let mut orders = Vec::new();
        for (path, lines) in plans {
            let order = Uuid::now_v7();
            events.extend(self.saga(order, "saga-user", &lines, path).await);
            orders.push((path, order));
        }
        SagaWorkload {
            events,
            products: [p1, p2],
            orders,
        }
    }
}

/// What [`Harness::saga_workload`] appended.
#[derive(Debug, Clone)]
pub struct SagaWorkload {
    /// Every event, in append order.
    pub events: Vec<EventEnvelope>,
    /// The lamp (stock 10) and the bulb (stock 5).
    pub products: [Uuid; 2],
    /// The order of each path.
    pub orders: Vec<(Path, Uuid)>,
}

impl SagaWorkload {
    /// The order that went down `path`.
    pub fn order(&self, path: Path) -> Uuid {
        self.orders
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, id)| *id)
            .expect("every path has an order")
    }

    /// The last event appended to `stream`.
    pub fn last_of(&self, stream: Uuid) -> &EventEnvelope {
        self.events
            .iter()
            .rev()
            .find(|e| e.stream_id == stream)
            .expect("the stream has events")
    }
}
