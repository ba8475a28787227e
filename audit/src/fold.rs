//! A fresh fold of the log through the domain aggregates' own `evolve`
//! (`domain::product`, `domain::order`, `domain::payment`), independent of
//! the projector's code: what every read model, the stock and the ledger
//! are checked against.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::order::{self, Order, OrderEvent, OrderState};
use domain::payment::{self, Payment, PaymentEvent, PaymentState};
use domain::product::{self, Product, ProductEvent, ProductState};
use domain::DomainEvent;
use uuid::Uuid;

use crate::log::{Log, LogEvent};
use crate::report::{AuditReport, Check};

/// Stock levels at one point of a product's fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockPoint {
    /// The stream version just folded.
    pub version: i64,
    /// Units available.
    pub available: i64,
    /// Units reserved.
    pub reserved: i64,
    /// Units sold.
    pub sold: i64,
}

/// A product stream folded.
#[derive(Debug, Clone, Default)]
pub struct ProductFold {
    /// The product (`None` if never registered).
    pub product: Option<Product>,
    /// The last version folded.
    pub version: i64,
    /// When the last event was recorded.
    pub updated_at: Option<DateTime<Utc>>,
    /// Units at registration.
    pub initial: i64,
    /// Units added by restocks.
    pub restocked: i64,
    /// The first point where a stock level was negative, if any.
    pub first_negative: Option<StockPoint>,
}

/// An order stream folded.
#[derive(Debug, Clone, Default)]
pub struct OrderFold {
    /// The order (`None` if never placed).
    pub order: Option<Order>,
    /// The last version folded.
    pub version: i64,
    /// When the last event was recorded.
    pub updated_at: Option<DateTime<Utc>>,
}

/// A payment stream folded.
#[derive(Debug, Clone, Default)]
pub struct PaymentFold {
    /// The payment (`None` if never requested).
    pub payment: Option<Payment>,
    /// The last version folded.
    pub version: i64,
    /// When the last event was recorded.
    pub updated_at: Option<DateTime<Utc>>,
    /// The provider's refund id, once refunded.
    pub refund_id: Option<String>,
    /// The provider's decline code, once declined.
    pub decline_code: Option<String>,
    /// Why no capture happened before the deadline, once failed.
    pub failure_reason: Option<String>,
}

/// Every stream of the log folded, by stream id.
#[derive(Debug, Default)]
pub struct Folded {
    /// The `inventory` streams.
    pub products: BTreeMap<Uuid, ProductFold>,
    /// The `orders` streams.
    pub orders: BTreeMap<Uuid, OrderFold>,
    /// The `payments` streams.
    pub payments: BTreeMap<Uuid, PaymentFold>,
}

impl Folded {
    /// Folds every stream of `log`; an event that does not decode is a
    /// violation and is left out.
    pub fn of(log: &Log, report: &mut AuditReport) -> Self {
        let mut folded = Self::default();
        for (stream_id, events) in log.streams() {
            match events[0].stream_type.as_str() {
                ProductEvent::STREAM_TYPE => {
                    let fold = folded.products.entry(stream_id).or_default();
                    for event in &events {
                        if let Some(decoded) = decode::<ProductEvent>(event, report) {
                            fold.apply(event, &decoded);
                        }
                    }
                }
                OrderEvent::STREAM_TYPE => {
                    let fold = folded.orders.entry(stream_id).or_default();
                    let mut state = OrderState::default();
                    for event in &events {
                        if let Some(decoded) = decode::<OrderEvent>(event, report) {
                            state = order::evolve(state, &decoded);
                            fold.version = event.stream_version;
                            fold.updated_at = Some(event.recorded_at);
                        }
                    }
                    fold.order = state.order().cloned();
                }
                PaymentEvent::STREAM_TYPE => {
                    let fold = folded.payments.entry(stream_id).or_default();
                    let mut state = PaymentState::default();
                    for event in &events {
                        if let Some(decoded) = decode::<PaymentEvent>(event, report) {
                            fold.note(&decoded);
                            state = payment::evolve(state, &decoded);
                            fold.version = event.stream_version;
                            fold.updated_at = Some(event.recorded_at);
                        }
                    }
                    fold.payment = state.payment().cloned();
                }
                other => report.violation(
                    Check::Log,
                    "unknown-stream-type",
                    format!("stream {stream_id} has type {other}"),
                ),
            }
        }
        folded
    }
}

impl ProductFold {
    fn apply(&mut self, event: &LogEvent, decoded: &ProductEvent) {
        match decoded {
            ProductEvent::ProductRegistered { initial_stock, .. } if self.product.is_none() => {
                self.initial = *initial_stock;
            }
            ProductEvent::ProductRestocked { quantity } => self.restocked += quantity,
            _ => {}
        }
        let state = match self.product.take() {
            Some(product) => ProductState::Registered(product),
            None => ProductState::Unregistered,
        };
        self.product = product::evolve(state, decoded).product().cloned();
        self.version = event.stream_version;
        self.updated_at = Some(event.recorded_at);
        if let Some(p) = &self.product {
            if self.first_negative.is_none() && (p.available < 0 || p.reserved < 0 || p.sold < 0) {
                self.first_negative = Some(StockPoint {
                    version: event.stream_version,
                    available: p.available,
                    reserved: p.reserved,
                    sold: p.sold,
                });
            }
        }
    }
}

impl PaymentFold {
    fn note(&mut self, decoded: &PaymentEvent) {
        match decoded {
            PaymentEvent::PaymentRefunded { refund_id, .. } => {
                self.refund_id = Some(refund_id.clone());
            }
            PaymentEvent::PaymentDeclined { code, .. } => self.decline_code = Some(code.clone()),
            PaymentEvent::PaymentFailed { reason, .. } => {
                self.failure_reason = Some(reason.clone());
            }
            PaymentEvent::PaymentRequested { .. } | PaymentEvent::PaymentCaptured { .. } => {}
        }
    }
}

fn decode<E: DomainEvent>(event: &LogEvent, report: &mut AuditReport) -> Option<E> {
    match E::from_parts(&event.event_type, event.schema_version, &event.payload) {
        Ok(decoded) => Some(decoded),
        Err(error) => {
            report.violation(
                Check::Log,
                "undecodable",
                format!(
                    "event {} (stream {} v{}): {error}",
                    event.event_id, event.stream_id, event.stream_version
                ),
            );
            None
        }
    }
}
