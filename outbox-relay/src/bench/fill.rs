//! Fills the outbox through the real append path with valid domain events:
//! each simulated order is placed, reserved, paid and confirmed, which
//! touches an order, a payment and a product stream (all three topics).

use chrono::Utc;
use domain::order::{OrderEvent, OrderLine};
use domain::payment::PaymentEvent;
use domain::product::ProductEvent;
use eventstore::{append, ExpectedVersion, Metadata, NewEvent};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Events one simulated order appends (order 3, payment 2, product 2).
pub const EVENTS_PER_ORDER: usize = 7;

/// Orders written per transaction while filling.
const ORDERS_PER_TRANSACTION: usize = 200;

/// Orders that share one product stream.
const ORDERS_PER_PRODUCT: usize = 50;

/// Concurrent fill transactions (each with its own products).
const FILLERS: usize = 4;

/// Appends at least `events` events (rounded up to whole orders) and
/// commits them in large transactions. Returns how many events it appended.
pub async fn fill_outbox(pool: &PgPool, events: usize) -> anyhow::Result<usize> {
    let orders = events.div_ceil(EVENTS_PER_ORDER);
    let per_filler = orders.div_ceil(FILLERS);
    let mut fillers = Vec::new();
    for filler in 0..FILLERS {
        let count = per_filler.min(orders.saturating_sub(filler * per_filler));
        let pool = pool.clone();
        fillers.push(tokio::spawn(async move { fill_orders(&pool, count).await }));
    }
    let mut appended = 0;
    for filler in fillers {
        appended += filler.await??;
    }
    Ok(appended)
}

async fn fill_orders(pool: &PgPool, orders: usize) -> anyhow::Result<usize> {
    let mut appended = 0;
    let mut product = Uuid::now_v7();
    let mut done = 0;
    while done < orders {
        let mut tx = pool.begin().await?;
        let chunk = ORDERS_PER_TRANSACTION.min(orders - done);
        for n in done..done + chunk {
            if n % ORDERS_PER_PRODUCT == 0 {
                product = Uuid::now_v7();
                appended += register_product(&mut tx, product).await?;
            }
            appended += place_and_settle_order(&mut tx, product).await?;
        }
        tx.commit().await?;
        done += chunk;
    }
    Ok(appended)
}

async fn register_product(conn: &mut PgConnection, product: Uuid) -> anyhow::Result<usize> {
    let registered = ProductEvent::ProductRegistered {
        name: format!("Bench widget {}", product.simple()),
        price_cents: 1250,
        initial_stock: 1_000_000,
    };
    let step = story_append(
        "inventory",
        product,
        ExpectedVersion::Exact(0),
        &[registered],
    );
    let metadata = Metadata::for_command(Uuid::now_v7());
    append(
        conn,
        step.stream_type,
        product,
        step.expected,
        &step.events,
        &metadata,
    )
    .await?;
    Ok(1)
}

/// One append of a simulated order: events for one stream.
pub struct StoryAppend {
    /// The stream's type (its topic).
    pub stream_type: &'static str,
    /// The stream.
    pub stream_id: Uuid,
    /// What the append expects.
    pub expected: ExpectedVersion,
    /// The events, in stream order.
    pub events: Vec<NewEvent>,
}

/// The appends of one order that is placed, reserved, paid and confirmed,
/// reserving stock of `product`.
pub fn order_story(product: Uuid) -> [StoryAppend; 3] {
    let (order, payment) = (Uuid::now_v7(), Uuid::now_v7());
    let quantity = 2;
    let order_events = [
        placed_order(product, quantity),
        OrderEvent::OrderAwaitingPayment {
            payment_id: payment,
        },
        OrderEvent::OrderConfirmed {
            payment_id: payment,
        },
    ];
    let payment_events = [
        PaymentEvent::PaymentRequested {
            order_id: order,
            amount_cents: 2500,
            currency: "EUR".to_owned(),
            token: "tok_ok".to_owned(),
        },
        PaymentEvent::PaymentCaptured {
            order_id: order,
            charge_id: format!("ch_{}", Uuid::now_v7().simple()),
        },
    ];
    let product_events = [
        ProductEvent::StockReserved {
            order_id: order,
            quantity,
        },
        ProductEvent::ReservationCommitted {
            order_id: order,
            quantity,
        },
    ];
    let new = ExpectedVersion::Exact(0);
    [
        story_append("orders", order, new, &order_events),
        story_append("payments", payment, new, &payment_events),
        story_append("inventory", product, ExpectedVersion::Any, &product_events),
    ]
}

fn story_append<E: domain::DomainEvent>(
    stream_type: &'static str,
    stream_id: Uuid,
    expected: ExpectedVersion,
    events: &[E],
) -> StoryAppend {
    StoryAppend {
        stream_type,
        stream_id,
        expected,
        events: events.iter().map(NewEvent::from_domain).collect(),
    }
}

async fn place_and_settle_order(conn: &mut PgConnection, product: Uuid) -> anyhow::Result<usize> {
    let mut appended = 0;
    for step in order_story(product) {
        let metadata = Metadata::for_command(Uuid::now_v7());
        append(
            conn,
            step.stream_type,
            step.stream_id,
            step.expected,
            &step.events,
            &metadata,
        )
        .await?;
        appended += step.events.len();
    }
    Ok(appended)
}

/// A valid `OrderPlaced` of one line of `product`.
pub fn placed_order(product: Uuid, quantity: i64) -> OrderEvent {
    OrderEvent::OrderPlaced {
        user_id: "bench-user".to_owned(),
        lines: vec![OrderLine {
            product_id: product,
            quantity,
            unit_price_cents: 1250,
        }],
        total_cents: 1250 * quantity,
        payment_token: "tok_ok".to_owned(),
        placed_at: Utc::now(),
    }
}
