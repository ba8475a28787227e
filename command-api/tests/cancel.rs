//! `POST /orders/{id}/cancel`: allowed until the payment is captured.

mod common;

use common::{assert_json, assert_problem, order_body, spawn_app, TestApp};
use domain::order::OrderEvent;
use domain::payment::{payment_id_for, PaymentEvent};
use domain::DomainEvent;
use eventstore::{ExpectedVersion, Metadata, NewEvent};
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use uuid::Uuid;

const PROBLEM: &str = "urn:orders:problem:";

/// Places an order of one product and returns its id.
async fn place(app: &TestApp) -> Uuid {
    let product = app.create_product(1250, 10).await;
    let response = app
        .post_json("/orders", &order_body("alice", &[(product, 2)]))
        .await;
    let body = assert_json(response, 201).await;
    body["order_id"].as_str().unwrap().parse().unwrap()
}

/// Appends `events` to a stream directly, as the saga would.
async fn append<E: DomainEvent>(app: &TestApp, stream_id: Uuid, events: &[E]) {
    let events: Vec<NewEvent> = events.iter().map(NewEvent::from_domain).collect();
    let mut tx = app.db.pool.begin().await.unwrap();
    eventstore::append(
        &mut tx,
        E::STREAM_TYPE,
        stream_id,
        ExpectedVersion::Any,
        &events,
        &Metadata::for_command(Uuid::now_v7()),
    )
    .await
    .expect("append");
    tx.commit().await.unwrap();
}

/// Records a requested and captured payment for `order`.
async fn capture(app: &TestApp, order: Uuid) {
    let payment_id = payment_id_for(order);
    append(
        app,
        order,
        &[OrderEvent::OrderAwaitingPayment { payment_id }],
    )
    .await;
    let requested = PaymentEvent::PaymentRequested {
        order_id: order,
        amount_cents: 2500,
        currency: "EUR".to_owned(),
        token: "tok_visa".to_owned(),
    };
    let captured = PaymentEvent::PaymentCaptured {
        order_id: order,
        charge_id: "ch_1".to_owned(),
    };
    append(app, payment_id, &[requested, captured]).await;
}

/// POSTs the cancellation without a body.
async fn cancel(app: &TestApp, order: Uuid) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/orders/{order}/cancel")))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cancelling_a_pending_order_records_order_cancelled() {
    let app = spawn_app().await;
    let order = place(&app).await;

    let response = cancel(&app, order).await;
    let correlation = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = assert_json(response, 200).await;

    let events = app.events(order).await;
    assert_eq!(events.len(), 2);
    let event = &events[1];
    assert_eq!(event.event_type, "OrderCancelled");
    assert_eq!(event.payload, json!({"reason": "cancelled by user"}));
    assert_eq!(event.metadata.correlation_id.to_string(), correlation);
    assert_eq!(event.metadata.causation_id, event.metadata.correlation_id);
    assert_eq!(
        body,
        json!({"order_id": order, "version": 2, "position": event.global_position,
               "status": "CANCELLED"})
    );
    assert_eq!(
        app.stream_rows(order).await[1],
        (2, event.global_position, true)
    );
}

#[tokio::test]
async fn cancelling_twice_appends_nothing_and_answers_the_current_version() {
    let app = spawn_app().await;
    let order = place(&app).await;
    let first = assert_json(cancel(&app, order).await, 200).await;
    let counts = app.counts().await;

    // An empty JSON object is the same request as no body.
    let again = app
        .post_json(&format!("/orders/{order}/cancel"), &json!({}))
        .await;
    let second = assert_json(again, 200).await;

    assert_eq!(second, first, "same version and position, status CANCELLED");
    assert_eq!(app.counts().await, counts, "no new event");
    assert_eq!(app.events(order).await.len(), 2);
}

#[tokio::test]
async fn unknown_orders_are_404_and_bad_ids_400() {
    let app = spawn_app().await;
    let unknown = cancel(&app, Uuid::now_v7()).await;
    let problem = assert_problem(unknown, 404).await;
    assert!(problem["detail"].as_str().unwrap().contains("order"));
    // A product id is not an order.
    let product = app.create_product(100, 1).await;
    assert_problem(cancel(&app, product).await, 404).await;

    let malformed = app
        .client
        .post(app.url("/orders/not-a-uuid/cancel"))
        .send()
        .await
        .unwrap();
    assert_problem(malformed, 400).await;
    assert_eq!(app.counts().await.events, 1, "only the product's event");
}

#[tokio::test]
async fn after_the_payment_is_captured_cancel_is_422_without_an_event() {
    let app = spawn_app().await;
    let order = place(&app).await;
    capture(&app, order).await;
    let counts = app.counts().await;

    let problem = assert_problem(cancel(&app, order).await, 422).await;
    assert_eq!(problem["type"], format!("{PROBLEM}payment-captured"));
    assert_eq!(app.counts().await, counts);

    // Once CONFIRMED, whatever the payment stream says.
    let confirmed = place(&app).await;
    let payment_id = payment_id_for(confirmed);
    append(
        &app,
        confirmed,
        &[
            OrderEvent::OrderAwaitingPayment { payment_id },
            OrderEvent::OrderConfirmed { payment_id },
        ],
    )
    .await;
    let problem = assert_problem(cancel(&app, confirmed).await, 422).await;
    assert_eq!(problem["type"], format!("{PROBLEM}payment-captured"));
}

#[tokio::test]
async fn a_rejected_order_cannot_be_cancelled_but_a_declined_one_can() {
    let app = spawn_app().await;
    let rejected = place(&app).await;
    let reason = "insufficient stock".to_owned();
    append(&app, rejected, &[OrderEvent::OrderRejected { reason }]).await;
    let problem = assert_problem(cancel(&app, rejected).await, 422).await;
    assert_eq!(problem["type"], format!("{PROBLEM}invalid-transition"));
    assert_eq!(app.events(rejected).await.len(), 2);

    let declined = place(&app).await;
    let payment_id = payment_id_for(declined);
    append(
        &app,
        declined,
        &[OrderEvent::OrderAwaitingPayment { payment_id }],
    )
    .await;
    let requested = PaymentEvent::PaymentRequested {
        order_id: declined,
        amount_cents: 2500,
        currency: "EUR".to_owned(),
        token: "tok_decline".to_owned(),
    };
    let code = "card_declined".to_owned();
    let declined_event = PaymentEvent::PaymentDeclined {
        order_id: declined,
        code,
    };
    append(&app, payment_id, &[requested, declined_event]).await;
    let body = assert_json(cancel(&app, declined).await, 200).await;
    assert_eq!(
        (body["version"].clone(), body["status"].clone()),
        (json!(3), json!("CANCELLED"))
    );
}

#[tokio::test]
async fn if_match_names_the_order_version() {
    let app = spawn_app().await;
    let order = place(&app).await;
    let path = format!("/orders/{order}/cancel");

    let stale = app
        .client
        .post(app.url(&path))
        .header("If-Match", "\"2\"")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(stale, 412).await;
    assert_eq!(problem["type"], format!("{PROBLEM}version-mismatch"));
    assert_eq!(app.events(order).await.len(), 1);

    let current = app
        .client
        .post(app.url(&path))
        .header("If-Match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(assert_json(current, 200).await["version"], 2);
}

#[tokio::test]
async fn an_idempotent_replay_returns_the_recorded_response() {
    let app = spawn_app().await;
    let order = place(&app).await;
    let send = |body: Option<&'static str>| {
        let mut request = app
            .client
            .post(app.url(&format!("/orders/{order}/cancel")))
            .header("Idempotency-Key", "cancel-1");
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        request.send()
    };

    let first = send(None).await.unwrap();
    assert_eq!(first.status(), 200);
    let first_body = first.text().await.unwrap();
    let counts = app.counts().await;

    for body in [None, Some("{}"), Some(" { } ")] {
        let replay = send(body).await.unwrap();
        assert_eq!(replay.status(), 200);
        assert_eq!(replay.headers()["idempotency-replayed"], "true");
        assert_eq!(replay.text().await.unwrap(), first_body, "{body:?}");
    }
    assert_eq!(app.counts().await, counts, "no new events or keys");
    let events = app.events(order).await;
    assert_eq!(
        events[1].metadata.idempotency_key.as_deref(),
        Some("cancel-1")
    );

    // A refusal is recorded under its key too.
    let paid = place(&app).await;
    capture(&app, paid).await;
    for _ in 0..2 {
        let refused = app
            .client
            .post(app.url(&format!("/orders/{paid}/cancel")))
            .header("Idempotency-Key", "cancel-paid")
            .send()
            .await
            .unwrap();
        assert_problem(refused, 422).await;
    }
}

#[tokio::test]
async fn a_body_other_than_nothing_or_an_empty_object_is_refused() {
    let app = spawn_app().await;
    let order = place(&app).await;
    let path = format!("/orders/{order}/cancel");

    let member = app
        .post_json(&path, &json!({"reason": "changed my mind"}))
        .await;
    let problem: Value = assert_problem(member, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("reason"));
    assert_problem(app.post_json(&path, &json!([])).await, 400).await;
    assert_problem(
        app.post_raw(&path, Some("application/json"), "{").await,
        400,
    )
    .await;
    assert_problem(app.post_raw(&path, Some("text/plain"), "cancel").await, 415).await;
    assert_eq!(app.events(order).await.len(), 1, "nothing was cancelled");
}
