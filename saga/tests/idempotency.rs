//! Guarantee 5 for the saga: a redelivered event changes nothing, because
//! its id is recorded in the same transaction as the handler's writes.

mod common;

use saga::handler::Handled;
use testkit::TestDatabase;

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test]
async fn a_redelivered_event_is_handled_once() {
    let db = TestDatabase::create().await;
    let (_, placed) = common::product_and_order(&db.pool).await;
    let event = &placed;
    let order = placed.stream_id;

    let handler = saga::Handler::new(db.pool.clone(), common::policy());
    let first = handler.handle(event).await.unwrap();
    assert_eq!(
        first,
        Handled::Applied {
            order_id: order,
            effect_due: true
        }
    );
    let events = count(&db, "SELECT count(*) FROM eventstore.events").await;
    assert_eq!(
        events,
        2 + 3,
        "StockReserved, OrderAwaitingPayment, PaymentRequested"
    );

    // The same message again, and concurrently several times.
    assert_eq!(handler.handle(event).await.unwrap(), Handled::Duplicate);
    let handler = std::sync::Arc::new(handler);
    let again: Vec<_> = (0..5)
        .map(|_| {
            let (handler, event) = (handler.clone(), event.clone());
            tokio::spawn(async move { handler.handle(&event).await.unwrap() })
        })
        .collect();
    for task in again {
        assert_eq!(task.await.unwrap(), Handled::Duplicate);
    }
    assert_eq!(
        count(&db, "SELECT count(*) FROM eventstore.events").await,
        events
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM saga.processed_events").await,
        1
    );
}
