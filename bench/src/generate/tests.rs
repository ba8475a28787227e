//! The generated log is one the system could have written: every stream
//! folds through the domain, every event has its outbox row, and the
//! products' books balance.

use domain::aggregate::{Aggregate, Order, Payment, Product};
use domain::order::OrderStatus;
use eventstore::{read_stream, EventEnvelope};
use testkit::TestDatabase;

use super::{generate, LogSpec};

fn fold<A: Aggregate>(events: &[EventEnvelope]) -> A::State {
    events.iter().fold(A::State::default(), |state, envelope| {
        let event = envelope.decode::<A::Event>().expect("a valid domain event");
        A::evolve(state, &event)
    })
}

#[tokio::test]
async fn the_generated_log_folds_through_the_domain_and_balances() {
    let db = TestDatabase::create().await;
    let log = generate(&db.pool, &LogSpec::new(3_000)).await.unwrap();
    assert!(log.events >= 3_000, "{} events", log.events);

    let (events, outbox): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM eventstore.events), (SELECT count(*) FROM eventstore.outbox)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((events, outbox), (log.events as i64, log.events as i64));

    let mut conn = db.pool.acquire().await.unwrap();
    for order_id in &log.orders {
        let order = fold::<Order>(&read_stream(&mut conn, *order_id, 0).await.unwrap());
        let status = order.status().expect("placed");
        assert!(
            matches!(status, OrderStatus::Confirmed | OrderStatus::Cancelled),
            "{status:?}"
        );
        let payment_id = domain::payment::payment_id_for(*order_id);
        let payment = fold::<Payment>(&read_stream(&mut conn, payment_id, 0).await.unwrap());
        assert!(
            payment.payment().is_some(),
            "order {order_id} has its payment"
        );
    }
    for product_id in &log.products {
        let stream = read_stream(&mut conn, *product_id, 0).await.unwrap();
        let product = fold::<Product>(&stream);
        let product = product.product().expect("registered");
        assert_eq!(product.reserved, 0, "nothing is left reserved");
        assert_eq!(
            product.available + product.sold,
            100_000_000,
            "stock balances"
        );
    }
    let hot = read_stream(&mut conn, log.hot_product(), 0).await.unwrap();
    assert_eq!(hot.len() as i64, log.hot_stream_events);
    let share = log.hot_stream_events as f64 / log.events as f64;
    assert!((0.05..0.15).contains(&share), "hot stream share {share}");
}
