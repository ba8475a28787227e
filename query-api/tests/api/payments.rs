//! Each order shows its payment state: `"payment": null` without a payment
//! row, else the payment with only the members that apply.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{now_micros, OrderSeed, PaymentSeed, TestApp};

#[tokio::test]
async fn order_shows_its_captured_payment_without_null_members() {
    let app = TestApp::spawn().await;
    let order = OrderSeed {
        status: "CONFIRMED".to_owned(),
        version: 3,
        ..OrderSeed::of("alice", now_micros())
    };
    app.insert_order(&order).await;
    let payment = PaymentSeed {
        status: "CAPTURED".to_owned(),
        charge_id: Some("ch_123".to_owned()),
        version: 2,
        ..PaymentSeed::requested(order.order_id, 3499)
    };
    app.insert_payment(&payment).await;

    let reply = app.get(&format!("/orders/{}", order.order_id)).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "CONFIRMED");
    assert_eq!(
        reply.body["version"], 3,
        "the order's version, not the payment's"
    );
    assert_eq!(
        reply.body["payment"],
        json!({
            "payment_id": payment.payment_id,
            "status": "CAPTURED",
            "amount_cents": 3499,
            "currency": "EUR",
            "charge_id": "ch_123",
        })
    );
}

#[tokio::test]
async fn every_payment_member_is_shown_when_set() {
    let app = TestApp::spawn().await;
    let order = OrderSeed {
        status: "CANCELLED".to_owned(),
        reason: Some("payment timed out".to_owned()),
        version: 3,
        ..OrderSeed::of("bob", now_micros())
    };
    app.insert_order(&order).await;
    let payment = PaymentSeed {
        status: "REFUNDED".to_owned(),
        charge_id: Some("ch_late".to_owned()),
        refund_id: Some("re_late".to_owned()),
        failure_reason: Some("no capture before the deadline".to_owned()),
        version: 4,
        ..PaymentSeed::requested(order.order_id, 1000)
    };
    app.insert_payment(&payment).await;
    let declined_order = OrderSeed::of("bob", now_micros());
    app.insert_order(&declined_order).await;
    app.insert_payment(&PaymentSeed {
        status: "DECLINED".to_owned(),
        decline_code: Some("card_declined".to_owned()),
        version: 2,
        ..PaymentSeed::requested(declined_order.order_id, 500)
    })
    .await;

    let reply = app.get(&format!("/orders/{}", order.order_id)).await;
    assert_eq!(reply.body["reason"], "payment timed out");
    assert_eq!(
        reply.body["payment"],
        json!({
            "payment_id": payment.payment_id,
            "status": "REFUNDED",
            "amount_cents": 1000,
            "currency": "EUR",
            "charge_id": "ch_late",
            "refund_id": "re_late",
            "failure_reason": "no capture before the deadline",
        })
    );
    let declined = app
        .get(&format!("/orders/{}", declined_order.order_id))
        .await;
    let payment = declined.body["payment"].as_object().unwrap();
    assert_eq!(payment["status"], "DECLINED");
    assert_eq!(payment["decline_code"], "card_declined");
    assert!(!payment.contains_key("charge_id"), "{payment:?}");
}

#[tokio::test]
async fn listed_orders_carry_their_payment_or_null() {
    let app = TestApp::spawn().await;
    let start = now_micros() - chrono::Duration::minutes(1);
    let unpaid = OrderSeed::of("carol", start);
    let paying = OrderSeed {
        status: "AWAITING_PAYMENT".to_owned(),
        version: 2,
        ..OrderSeed::of("carol", start + chrono::Duration::seconds(1))
    };
    app.insert_order(&unpaid).await;
    app.insert_order(&paying).await;
    let payment = PaymentSeed::requested(paying.order_id, 3499);
    app.insert_payment(&payment).await;

    let reply = app.get("/users/carol/orders").await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let orders = reply.body["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0]["order_id"], json!(paying.order_id));
    assert_eq!(
        orders[0]["payment"],
        json!({
            "payment_id": payment.payment_id,
            "status": "REQUESTED",
            "amount_cents": 3499,
            "currency": "EUR",
        })
    );
    assert_eq!(orders[1]["order_id"], json!(unpaid.order_id));
    assert!(orders[1]["payment"].is_null());
    assert!(orders[1].as_object().unwrap().contains_key("payment"));
    // List items and single reads have the same shape.
    for order in orders {
        let single = app
            .get(&format!("/orders/{}", order["order_id"].as_str().unwrap()))
            .await;
        assert_eq!(order, &single.body);
    }
}
