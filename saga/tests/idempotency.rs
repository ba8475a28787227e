//! Guarantee 5 for the saga: a redelivered event changes nothing, because
//! its id is recorded in the same transaction as the handler's writes.

use chrono::Utc;
use domain::order::{OrderCommand, RequestedLine};
use domain::product::ProductCommand;
use eventstore::aggregate::execute;
use eventstore::Metadata;
use saga::handler::Handled;
use testkit::TestDatabase;
use uuid::Uuid;

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test]
async fn a_redelivered_event_is_handled_once() {
    let db = TestDatabase::create().await;
    let (product, order) = (Uuid::now_v7(), Uuid::now_v7());
    let meta = Metadata::for_command(Uuid::now_v7());
    let mut tx = db.pool.begin().await.unwrap();
    execute::<domain::aggregate::Product>(
        &mut tx,
        product,
        ProductCommand::Register {
            name: "Mug".into(),
            price_cents: 500,
            initial_stock: 5,
        },
        &meta,
    )
    .await
    .unwrap()
    .unwrap();
    let placed = execute::<domain::aggregate::Order>(
        &mut tx,
        order,
        OrderCommand::Place {
            user_id: "alice".into(),
            lines: vec![RequestedLine {
                product_id: product,
                quantity: 2,
            }],
            payment_token: "tok_ok".into(),
            prices: [(product, 500)].into(),
            placed_at: Utc::now(),
        },
        &meta,
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    tx.commit().await.unwrap();
    let event = &placed.events[0];

    let handler = saga::Handler::new(
        db.pool.clone(),
        domain::saga::SagaPolicy {
            payment_deadline: chrono::Duration::seconds(30),
            currency: "EUR".into(),
        },
    );
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
