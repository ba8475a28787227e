//! The live projector: Kafka messages in, read-model rows out, each event
//! applied exactly once whatever the delivery (guarantee 5).

mod common;

use std::time::Duration;

use common::{Harness, SETTLE};
use eventstore::NewEvent;
use serde_json::json;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_through_kafka_build_products_orders_and_user_orders() {
    let h = Harness::new().await;
    let (p1, p2, order) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let events = vec![
        h.register(p1, "Lamp", 1000, 5).await,
        h.restock(p1, 3).await,
        h.register(p2, "Bulb", 500, 0).await,
        h.place_order(order, "alice", &[(p1, 2, 1000), (p2, 1, 500)])
            .await,
    ];
    h.publish(&events).await;
    let consumer = h.consumer(&h.group());
    h.wait_projected().await;
    consumer.stop().await;

    let product: (
        String,
        i64,
        i64,
        i64,
        i64,
        i64,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as(
        "SELECT name, price_cents, available, reserved, sold, version, updated_at
             FROM read.products WHERE product_id = $1",
    )
    .bind(p1)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(
        product,
        ("Lamp".to_owned(), 1000, 8, 0, 0, 2, events[1].recorded_at)
    );
    let bulb: (i64, i64) =
        sqlx::query_as("SELECT available, version FROM read.products WHERE product_id = $1")
            .bind(p2)
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert_eq!(bulb, (0, 1));

    let placed = &events[3];
    let placed_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(placed.payload["placed_at"].clone()).unwrap();
    let row: serde_json::Value = sqlx::query_scalar(
        "SELECT json_build_object('user_id', user_id, 'status', status, 'reason', reason,
                'lines', lines, 'total_cents', total_cents, 'version', version,
                'placed_at_ok', placed_at = $2, 'updated_at_ok', updated_at = $3)
         FROM read.orders WHERE order_id = $1",
    )
    .bind(order)
    .bind(placed_at)
    .bind(placed.recorded_at)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(
        row,
        json!({
            "user_id": "alice", "status": "PENDING", "reason": null,
            "lines": [
                {"product_id": p1, "quantity": 2, "unit_price_cents": 1000},
                {"product_id": p2, "quantity": 1, "unit_price_cents": 500}
            ],
            "total_cents": 2500, "version": 1, "placed_at_ok": true, "updated_at_ok": true
        })
    );
    let user_order: (String, i64, bool) = sqlx::query_as(
        "SELECT user_id, version, placed_at = $2 FROM read.user_orders WHERE order_id = $1",
    )
    .bind(order)
    .bind(placed_at)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(user_order, ("alice".to_owned(), 1, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivered_messages_leave_identical_read_models() {
    let h = Harness::new().await;
    let mut events = h.populate(8, 16).await;
    events.extend(h.saga_workload().await.events);
    let consumer = h.consumer(&h.group());

    // Every message twice in a row.
    let doubled: Vec<_> = events.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
    h.publish(&doubled).await;
    h.wait_projected().await;
    wait_committed(&consumer, doubled.len() as u64).await;
    let once = h.snapshot().await;

    // Rebuild from nothing with another interleaving: everything newest first, twice.
    sqlx::query("TRUNCATE read.products, read.orders, read.user_orders, read.payments")
        .execute(h.pool())
        .await
        .unwrap();
    let reversed: Vec<_> = events.iter().rev().cloned().collect();
    h.publish(&reversed).await;
    h.publish(&reversed).await;
    wait_committed(&consumer, (doubled.len() + 2 * reversed.len()) as u64).await;
    h.wait_projected().await;
    assert_eq!(h.snapshot().await, once);
    assert_eq!(consumer.stats.parked(), 0);
    consumer.stop().await;

    // And both equal a replay of the log.
    h.replay(&[]).await;
    assert_eq!(h.snapshot().await, once);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gap_in_a_stream_is_repaired_from_the_log() {
    let h = Harness::new().await;
    let (p1, p2) = (Uuid::now_v7(), Uuid::now_v7());
    let v1 = h.register(p1, "Chair", 4000, 10).await;
    let _v2 = h.restock(p1, 5).await;
    let v3 = h.restock(p1, 7).await;
    let _other_v1 = h.register(p2, "Desk", 9000, 1).await;
    let other_v2 = h.restock(p2, 4).await;
    // v2 of p1 and v1 of p2 never reach Kafka.
    h.publish(&[v1, v3, other_v2]).await;
    let consumer = h.consumer(&h.group());
    h.wait_projected().await;
    consumer.stop().await;

    let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT product_id, available, version FROM read.products ORDER BY product_id",
    )
    .fetch_all(h.pool())
    .await
    .unwrap();
    assert_eq!(rows, [(p1, 22, 3), (p2, 5, 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undecodable_and_unknown_events_are_parked_without_blocking_other_streams() {
    let h = Harness::new().await;
    let (p1, p2) = (Uuid::now_v7(), Uuid::now_v7());
    let registered = h.register(p1, "Table", 100, 1).await;
    let unknown = h
        .append(
            "inventory",
            p1,
            &[NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "ProductDiscontinued".to_owned(),
                schema_version: 1,
                payload: json!({}),
            }],
        )
        .await;
    h.publish(&[registered]).await;
    h.publish(&unknown).await;
    // Not an event, and its key names no stream: it holds nothing back.
    h.publish_raw("inventory", "garbage", b"not json").await;
    let later = h.register(p2, "Stool", 50, 2).await;
    h.publish(&[later]).await;

    let consumer = h.consumer(&h.group());
    let pool = h.pool().clone();
    testkit::eventually("the valid event after the bad ones", SETTLE, || {
        let pool = pool.clone();
        async move {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT version FROM read.products WHERE product_id = $1")
                    .bind(p2)
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
            found
        }
    })
    .await;
    let stats = consumer.stats.clone();
    testkit::eventually("both bad messages parked", SETTLE, || {
        let parked = stats.parked();
        async move { (parked == 2).then_some(()) }
    })
    .await;
    consumer.stop().await;
    let version: i64 =
        sqlx::query_scalar("SELECT version FROM read.products WHERE product_id = $1")
            .bind(p1)
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert_eq!(version, 1, "the unknown event must not be applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_apply_is_retried_until_it_succeeds() {
    let h = Harness::new().await;
    sqlx::query("ALTER TABLE read.products RENAME TO products_away")
        .execute(h.pool())
        .await
        .unwrap();
    let p1 = Uuid::now_v7();
    let registered = h.register(p1, "Shelf", 300, 3).await;
    h.publish(&[registered]).await;
    let consumer = h.consumer(&h.group());
    let stats = consumer.stats.clone();
    testkit::eventually("retries of the failing apply", SETTLE, || {
        let retries = stats.retries();
        async move { (retries >= 3).then_some(()) }
    })
    .await;
    assert_eq!(consumer.stats.committed(), 0);

    sqlx::query("ALTER TABLE read.products_away RENAME TO products")
        .execute(h.pool())
        .await
        .unwrap();
    h.wait_projected().await;
    assert_eq!(consumer.stats.parked(), 0);
    consumer.stop().await;
}

async fn wait_committed(consumer: &common::RunningConsumer, count: u64) {
    let stats = consumer.stats.clone();
    testkit::eventually(
        &format!("{count} messages committed"),
        Duration::from_secs(60),
        || {
            let committed = stats.committed();
            async move { (committed >= count).then_some(()) }
        },
    )
    .await;
}
