//! The saga's events (reservations, order lifecycle, payments) through Kafka
//! into `read.products`, `read.orders`, `read.user_orders` and `read.payments`.

mod common;

use chrono::{DateTime, Utc};
use common::saga::{self, Path, SagaWorkload};
use common::Harness;
use domain::payment::payment_id_for;
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saga_events_through_kafka_set_stock_order_status_and_payments() {
    let h = Harness::new().await;
    let work = h.saga_workload().await;
    h.publish(&work.events).await;
    let consumer = h.consumer(&h.group());
    h.wait_projected().await;
    assert_eq!(consumer.stats.parked(), 0);
    consumer.stop().await;

    let [lamp, bulb] = work.products;
    // Lamp: 2 sold (confirmed); 3 declined, 1 rejected, 1 late: all released.
    assert_eq!(product(&h, lamp).await, (8, 0, 2, 9));
    // Bulb: 1 sold, 2 cancelled by the user (released), 1 still reserved.
    assert_eq!(product(&h, bulb).await, (3, 1, 1, 6));
    for id in [lamp, bulb] {
        assert_eq!(
            updated_at(&h, "products", "product_id", id).await,
            work.last_of(id).recorded_at
        );
    }

    let expected_orders = [
        (Path::Confirmed, "CONFIRMED", None, 3),
        (
            Path::Declined,
            "CANCELLED",
            Some(saga::DECLINED_REASON.to_owned()),
            3,
        ),
        (
            Path::Rejected,
            "REJECTED",
            Some(saga::rejected_reason(bulb)),
            2,
        ),
        (
            Path::UserCancelled,
            "CANCELLED",
            Some(saga::USER_REASON.to_owned()),
            3,
        ),
        (
            Path::LateCaptureRefunded,
            "CANCELLED",
            Some(saga::TIMEOUT_REASON.to_owned()),
            3,
        ),
        (Path::AwaitingPayment, "AWAITING_PAYMENT", None, 2),
    ];
    for (path, status, reason, version) in expected_orders {
        let id = work.order(path);
        let row: (String, Option<String>, i64) =
            sqlx::query_as("SELECT status, reason, version FROM read.orders WHERE order_id = $1")
                .bind(id)
                .fetch_one(h.pool())
                .await
                .unwrap();
        assert_eq!(row, (status.to_owned(), reason, version), "{path:?}");
        assert_eq!(
            updated_at(&h, "orders", "order_id", id).await,
            work.last_of(id).recorded_at,
            "{path:?}"
        );
        let indexed: i64 =
            sqlx::query_scalar("SELECT version FROM read.user_orders WHERE order_id = $1")
                .bind(id)
                .fetch_one(h.pool())
                .await
                .unwrap();
        assert_eq!(indexed, version, "user_orders follows the stream's version");
    }

    assert_payments(&h, &work).await;
}

async fn assert_payments(h: &Harness, work: &SagaWorkload) {
    let row = |path| payment(h, work.order(path));
    let confirmed = work.order(Path::Confirmed);
    assert_eq!(
        row(Path::Confirmed).await,
        Some(json!({
            "order_id": confirmed, "status": "CAPTURED", "amount_cents": 2500, "currency": "EUR",
            "charge_id": saga::charge_id(confirmed), "refund_id": null, "decline_code": null,
            "failure_reason": null, "version": 2
        }))
    );
    let declined = row(Path::Declined).await.unwrap();
    assert_eq!(
        (
            &declined["status"],
            &declined["decline_code"],
            &declined["charge_id"]
        ),
        (&json!("DECLINED"), &json!("card_declined"), &Value::Null)
    );
    assert_eq!(
        row(Path::Rejected).await,
        None,
        "a rejected order has no payment"
    );
    let voided = row(Path::UserCancelled).await.unwrap();
    assert_eq!(
        (
            &voided["status"],
            &voided["failure_reason"],
            &voided["amount_cents"]
        ),
        (&json!("FAILED"), &json!(saga::VOID_FAILURE), &json!(1000))
    );
    let late = work.order(Path::LateCaptureRefunded);
    assert_eq!(
        row(Path::LateCaptureRefunded).await,
        Some(json!({
            "order_id": late, "status": "REFUNDED", "amount_cents": 1000, "currency": "EUR",
            "charge_id": saga::charge_id(late), "refund_id": saga::refund_id(late),
            "decline_code": null, "failure_reason": saga::DEADLINE_FAILURE, "version": 4
        }))
    );
    let waiting = row(Path::AwaitingPayment).await.unwrap();
    assert_eq!(
        (&waiting["status"], &waiting["version"]),
        (&json!("REQUESTED"), &json!(1))
    );
    for (_, order) in &work.orders {
        if let Some(last) = work
            .events
            .iter()
            .rev()
            .find(|e| e.stream_id == payment_id_for(*order))
        {
            let at = updated_at(h, "payments", "payment_id", last.stream_id).await;
            assert_eq!(at, last.recorded_at);
        }
    }
}

/// `(available, reserved, sold, version)` of a product.
async fn product(h: &Harness, id: Uuid) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT available, reserved, sold, version FROM read.products WHERE product_id = $1",
    )
    .bind(id)
    .fetch_one(h.pool())
    .await
    .unwrap()
}

/// The payment row of `order` without its key and timestamp, as JSON.
async fn payment(h: &Harness, order: Uuid) -> Option<Value> {
    let row: Option<Value> = sqlx::query_scalar(
        "SELECT to_jsonb(p) - 'payment_id' - 'updated_at' FROM read.payments p
         WHERE payment_id = $1",
    )
    .bind(payment_id_for(order))
    .fetch_optional(h.pool())
    .await
    .unwrap();
    row
}

async fn updated_at(h: &Harness, table: &str, key: &str, id: Uuid) -> DateTime<Utc> {
    sqlx::query_scalar(&format!(
        "SELECT updated_at FROM read.{table} WHERE {key} = $1"
    ))
    .bind(id)
    .fetch_one(h.pool())
    .await
    .unwrap()
}
