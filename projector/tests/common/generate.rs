//! A realistic event log, fast: the events the command API and the saga
//! write down each path of an order (confirmed, declined, cancelled by the
//! user), appended through `eventstore::append` (events, outbox rows, dense
//! versions) in big transactions: each wave of orders is one transaction,
//! each stream's share of a wave one append.

use std::collections::BTreeMap;

use chrono::Utc;
use domain::order::{OrderEvent, OrderLine};
use domain::payment::{payment_id_for, PaymentEvent};
use domain::product::ProductEvent;
use domain::DomainEvent;
use eventstore::{ExpectedVersion, Metadata, NewEvent};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Orders per transaction.
const WAVE: usize = 400;

/// Appends at least `events` events (whole orders); returns how many.
pub async fn generate(pool: &PgPool, events: usize) -> usize {
    let mut rng = Lcg(0x5eed);
    let products: Vec<(Uuid, i64)> = (0..(events / 2_000).clamp(8, 500))
        .map(|i| (Uuid::now_v7(), 100 + (i as i64 % 50) * 25))
        .collect();
    let mut conn = pool.acquire().await.expect("connect");
    let mut written = 0;
    let mut tx = sqlx::Connection::begin(&mut *conn).await.expect("begin");
    for (i, (id, price)) in products.iter().enumerate() {
        let registered = ProductEvent::ProductRegistered {
            name: format!("product {i}"),
            price_cents: *price,
            initial_stock: 1_000_000_000,
        };
        written += append(&mut tx, "inventory", *id, &[&registered]).await;
    }
    tx.commit().await.expect("commit products");
    while written < events {
        let mut wave = Wave::default();
        for _ in 0..WAVE {
            wave.order(&mut rng, &products);
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await.expect("begin");
        written += wave.append(&mut tx).await;
        tx.commit().await.expect("commit wave");
    }
    written
}

/// A deterministic pseudo-random sequence.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// One transaction's events, per stream in stream order.
#[derive(Default)]
struct Wave {
    orders: Vec<(Uuid, Vec<OrderEvent>)>,
    payments: Vec<(Uuid, Vec<PaymentEvent>)>,
    products: BTreeMap<Uuid, Vec<ProductEvent>>,
}

impl Wave {
    /// Adds one order down a path: 8 in 10 confirmed, 1 declined, 1 cancelled by its user.
    fn order(&mut self, rng: &mut Lcg, catalog: &[(Uuid, i64)]) {
        let order_id = Uuid::now_v7();
        let payment_id = payment_id_for(order_id);
        let mut lines: Vec<OrderLine> = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let (product_id, unit_price_cents) = catalog[rng.below(catalog.len())];
            if lines.iter().all(|l| l.product_id != product_id) {
                lines.push(OrderLine {
                    product_id,
                    quantity: 1 + rng.below(4) as i64,
                    unit_price_cents,
                });
            }
        }
        let total_cents = lines.iter().map(|l| l.quantity * l.unit_price_cents).sum();
        let path = rng.below(10);
        let mut order = vec![
            OrderEvent::OrderPlaced {
                user_id: format!("user-{}", rng.below(5_000)),
                lines: lines.clone(),
                total_cents,
                payment_token: "tok_ok".to_owned(),
                placed_at: Utc::now(),
            },
            OrderEvent::OrderAwaitingPayment { payment_id },
        ];
        let mut payment = vec![PaymentEvent::PaymentRequested {
            order_id,
            amount_cents: total_cents,
            currency: "EUR".to_owned(),
            token: "tok_ok".to_owned(),
        }];
        let settle = |quantity| match path {
            0 | 1 => ProductEvent::ReservationReleased { order_id, quantity },
            _ => ProductEvent::ReservationCommitted { order_id, quantity },
        };
        for line in &lines {
            let stream = self.products.entry(line.product_id).or_default();
            stream.push(ProductEvent::StockReserved {
                order_id,
                quantity: line.quantity,
            });
            stream.push(settle(line.quantity));
        }
        match path {
            0 => {
                payment.push(PaymentEvent::PaymentDeclined {
                    order_id,
                    code: "card_declined".to_owned(),
                });
                order.push(OrderEvent::OrderCancelled {
                    reason: "payment declined (card_declined)".to_owned(),
                });
            }
            1 => {
                order.push(OrderEvent::OrderCancelled {
                    reason: "cancelled by user".to_owned(),
                });
                payment.push(PaymentEvent::PaymentFailed {
                    order_id,
                    reason: "voided: order cancelled".to_owned(),
                });
            }
            _ => {
                payment.push(PaymentEvent::PaymentCaptured {
                    order_id,
                    charge_id: format!("ch_{}", order_id.simple()),
                });
                order.push(OrderEvent::OrderConfirmed { payment_id });
            }
        }
        self.orders.push((order_id, order));
        self.payments.push((payment_id, payment));
    }

    /// Appends the wave (products in id order, as writers lock them).
    async fn append(self, conn: &mut PgConnection) -> usize {
        let mut written = 0;
        for (id, events) in &self.orders {
            let events: Vec<&OrderEvent> = events.iter().collect();
            written += append(conn, "orders", *id, &events).await;
        }
        for (id, events) in &self.payments {
            let events: Vec<&PaymentEvent> = events.iter().collect();
            written += append(conn, "payments", *id, &events).await;
        }
        for (id, events) in &self.products {
            let events: Vec<&ProductEvent> = events.iter().collect();
            written += append(conn, "inventory", *id, &events).await;
        }
        written
    }
}

async fn append<E: DomainEvent>(
    conn: &mut PgConnection,
    stream_type: &str,
    id: Uuid,
    events: &[&E],
) -> usize {
    let events: Vec<NewEvent> = events.iter().map(|e| NewEvent::from_domain(*e)).collect();
    eventstore::append(
        conn,
        stream_type,
        id,
        ExpectedVersion::Any,
        &events,
        &Metadata::for_command(Uuid::now_v7()),
    )
    .await
    .expect("append");
    events.len()
}
