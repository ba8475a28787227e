//! Every path of the order saga end to end over HTTP, against the real
//! Postgres, Kafka and payment-gateway simulator.

use std::time::Duration;

use e2e::System;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

async fn net_captured(system: &System, order_id: &str) -> i64 {
    let ledger = payment_gateway::ledger::net_captured_by_reference(&system.db.pool)
        .await
        .unwrap();
    ledger
        .get(&order_id.parse::<Uuid>().unwrap())
        .copied()
        .unwrap_or(0)
}

async fn stock(system: &System, product: &str, expect: (i64, i64, i64)) -> Value {
    system
        .query_until(&format!("/products/{product}"), WAIT, |p| {
            (
                p["available"].as_i64(),
                p["reserved"].as_i64(),
                p["sold"].as_i64(),
            ) == (Some(expect.0), Some(expect.1), Some(expect.2))
        })
        .await
}

/// Event types of `stream_id`, in order.
async fn stream_events(system: &System, stream_id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT event_type FROM eventstore.events WHERE stream_id = $1 ORDER BY stream_version",
    )
    .bind(stream_id.parse::<Uuid>().unwrap())
    .fetch_all(&system.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_paid_order_is_confirmed_and_its_stock_sold() {
    let system = System::start().await;
    let mug = system.product("Mug", 1250, 10).await;
    let order = system.order("alice", &[(&mug, 2)], "tok_ok").await;

    let confirmed = system.terminal_order(&order, WAIT).await;
    assert_eq!(confirmed["status"], "CONFIRMED", "{confirmed}");
    stock(&system, &mug, (8, 0, 2)).await;
    assert_eq!(net_captured(&system, &order).await, 2500);
    assert_eq!(
        stream_events(&system, &order).await,
        ["OrderPlaced", "OrderAwaitingPayment", "OrderConfirmed"]
    );
}

#[tokio::test]
async fn a_later_line_without_stock_releases_the_earlier_reservation_and_rejects() {
    let system = System::start().await;
    let mug = system.product("Mug", 1250, 5).await;
    let cup = system.product("Cup", 300, 1).await;
    let order = system
        .order("alice", &[(&mug, 2), (&cup, 3)], "tok_ok")
        .await;

    let rejected = system.terminal_order(&order, WAIT).await;
    assert_eq!(rejected["status"], "REJECTED", "{rejected}");
    let reason = rejected["reason"].as_str().unwrap();
    assert!(
        reason.contains("line 2") && reason.contains(&cup),
        "{reason}"
    );
    assert!(reason.contains("requested 3, available 1"), "{reason}");
    stock(&system, &mug, (5, 0, 0)).await;
    stock(&system, &cup, (1, 0, 0)).await;
    let mug_events = stream_events(&system, &mug).await;
    assert_eq!(
        mug_events,
        ["ProductRegistered", "StockReserved", "ReservationReleased"]
    );
    assert_eq!(net_captured(&system, &order).await, 0);
}

#[tokio::test]
async fn a_declined_payment_releases_the_stock_and_cancels_with_the_code() {
    let system = System::start().await;
    let mug = system.product("Mug", 1250, 10).await;
    let order = system
        .order("alice", &[(&mug, 1)], "tok_decline_insufficient_funds")
        .await;

    let cancelled = system.terminal_order(&order, WAIT).await;
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["reason"], "payment declined: insufficient_funds");
    stock(&system, &mug, (10, 0, 0)).await;
    assert_eq!(net_captured(&system, &order).await, 0);
}

#[tokio::test]
async fn a_user_cancel_before_capture_releases_and_cancels_and_after_capture_is_refused() {
    let system = System::start().await;
    let mug = system.product("Mug", 1250, 10).await;
    // tok_hang: the provider never answers, so the order waits for payment.
    let order = system.order("alice", &[(&mug, 3)], "tok_hang").await;
    system
        .query_until(&format!("/orders/{order}"), WAIT, |o| {
            o["status"] == "AWAITING_PAYMENT"
        })
        .await;
    let (status, body) = system
        .command(&format!("/orders/{order}/cancel"), serde_json::json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let cancelled = system.terminal_order(&order, WAIT).await;
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["reason"], "cancelled by user");
    stock(&system, &mug, (10, 0, 0)).await;
    assert_eq!(net_captured(&system, &order).await, 0);

    let paid = system.order("bob", &[(&mug, 1)], "tok_ok").await;
    assert_eq!(
        system.terminal_order(&paid, WAIT).await["status"],
        "CONFIRMED"
    );
    let (status, body) = system
        .command(&format!("/orders/{paid}/cancel"), serde_json::json!({}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        system.terminal_order(&paid, WAIT).await["status"],
        "CONFIRMED"
    );
}

#[tokio::test]
async fn a_payment_that_timed_out_but_was_captured_is_confirmed_at_the_deadline() {
    let system = System::start().await;
    let mug = system.product("Mug", 1250, 10).await;
    let order = system.order("alice", &[(&mug, 1)], "tok_timeout").await;

    let done = system.terminal_order(&order, WAIT).await;
    assert_eq!(done["status"], "CONFIRMED", "{done}");
    assert_eq!(net_captured(&system, &order).await, 1250);
    stock(&system, &mug, (9, 0, 1)).await;
    let charges = payment_gateway::ledger::charges_for(&system.db.pool, order.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(charges.len(), 1, "retries reused the idempotency key");
}

#[tokio::test]
async fn a_payment_that_never_reached_the_provider_is_cancelled_at_the_deadline() {
    let system = System::start().await;
    let mug = system.product("Mug", 1250, 10).await;
    let order = system.order("alice", &[(&mug, 1)], "tok_hang").await;

    let done = system.terminal_order(&order, WAIT).await;
    assert_eq!(done["status"], "CANCELLED", "{done}");
    assert!(
        done["reason"]
            .as_str()
            .unwrap()
            .starts_with("payment timed out"),
        "{done}"
    );
    stock(&system, &mug, (10, 0, 0)).await;
    assert_eq!(net_captured(&system, &order).await, 0);
}

#[tokio::test]
async fn a_flaky_provider_recovers_and_charges_once() {
    let system = System::start().await;
    let mug = system.product("Mug", 1250, 10).await;
    let order = system.order("alice", &[(&mug, 1)], "tok_flaky").await;

    assert_eq!(
        system.terminal_order(&order, WAIT).await["status"],
        "CONFIRMED"
    );
    let charges = payment_gateway::ledger::charges_for(&system.db.pool, order.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(charges.len(), 1);
    assert_eq!(net_captured(&system, &order).await, 1250);
}

#[tokio::test]
async fn a_provider_outage_opens_the_circuit_orders_wait_then_complete() {
    let system = System::start().await;
    let mug = system.product("Mug", 1000, 10).await;
    let proxy = system.gateway_proxy.as_ref().unwrap();
    proxy.cut();
    let mut orders = Vec::new();
    for user in ["a", "b", "c"] {
        orders.push(system.order(user, &[(&mug, 1)], "tok_ok").await);
    }
    // Well past the payment deadline: an outage never fails an order.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for order in &orders {
        let (_, body) = system.query(&format!("/orders/{order}")).await;
        assert_eq!(body["status"], "AWAITING_PAYMENT", "{body}");
    }
    stock(&system, &mug, (7, 3, 0)).await;

    proxy.restore();
    for order in &orders {
        assert_eq!(
            system.terminal_order(order, WAIT).await["status"],
            "CONFIRMED"
        );
        assert_eq!(net_captured(&system, order).await, 1000);
    }
    stock(&system, &mug, (7, 0, 3)).await;
}

#[tokio::test]
async fn all_events_of_an_order_share_its_correlation_id_and_chain_their_causation() {
    let system = System::start().await;
    let mug = system.product("Mug", 1250, 10).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = system
        .http
        .post(format!("{}/orders", system.command_url))
        .header("traceparent", traceparent)
        .json(&serde_json::json!({"user_id": "alice", "lines": [{"product_id": mug, "quantity": 1}], "payment": {"token": "tok_ok"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let correlation: Uuid = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let order: Uuid = body["order_id"].as_str().unwrap().parse().unwrap();
    system.terminal_order(&order.to_string(), WAIT).await;

    let events: Vec<(Uuid, String, serde_json::Value)> = sqlx::query_as(
        "SELECT event_id, event_type, metadata FROM eventstore.events
         WHERE stream_id = $1 OR stream_id = $2 OR payload->>'order_id' = $1::text
         ORDER BY global_position",
    )
    .bind(order)
    .bind(domain::payment::payment_id_for(order))
    .fetch_all(&system.db.pool)
    .await
    .unwrap();
    let types: Vec<&str> = events.iter().map(|(_, t, _)| t.as_str()).collect();
    for expected in [
        "OrderPlaced",
        "StockReserved",
        "OrderAwaitingPayment",
        "PaymentRequested",
        "PaymentCaptured",
        "ReservationCommitted",
        "OrderConfirmed",
    ] {
        assert!(
            types.contains(&expected),
            "{expected} missing from {types:?}"
        );
    }
    let mut known = vec![correlation];
    for (event_id, event_type, metadata) in &events {
        assert_eq!(
            metadata["correlation_id"],
            correlation.to_string(),
            "{event_type}"
        );
        assert_eq!(metadata["traceparent"], traceparent, "{event_type}");
        let causation: Uuid = metadata["causation_id"].as_str().unwrap().parse().unwrap();
        assert!(
            known.contains(&causation),
            "{event_type} is caused by {causation}, not an earlier event of the order"
        );
        known.push(*event_id);
    }
}

#[tokio::test]
async fn a_slow_provider_call_does_not_hold_up_other_orders_payments() {
    // Each charge attempt for tok_hang waits the full 2 s request timeout,
    // three attempts: about 6 s in which the provider answers nothing.
    let system = System::start_with(e2e::Options {
        payment_request_timeout: Duration::from_secs(2),
        slow_response: Duration::from_secs(5),
        breaker_failures: 10,
        ..e2e::Options::default()
    })
    .await;
    let mug = system.product("Mug", 1250, 10).await;
    let slow = system.order("alice", &[(&mug, 1)], "tok_hang").await;
    system
        .query_until(&format!("/orders/{slow}"), WAIT, |o| {
            o["status"] == "AWAITING_PAYMENT"
        })
        .await;
    let started = tokio::time::Instant::now();
    let quick = system.order("bob", &[(&mug, 1)], "tok_ok").await;
    assert_eq!(
        system.terminal_order(&quick, WAIT).await["status"],
        "CONFIRMED"
    );
    let waited = started.elapsed();
    let (_, slow_order) = system.query(&format!("/orders/{slow}")).await;
    assert_eq!(
        slow_order["status"], "AWAITING_PAYMENT",
        "the slow charge is still in flight"
    );
    assert!(
        waited < Duration::from_secs(4),
        "the quick order waited {waited:?} behind the slow call"
    );
}
