//! `POST /orders`.

mod common;

use common::{assert_json, assert_problem, order_body, spawn_app};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn place_order_prices_lines_from_the_catalog() {
    let app = spawn_app().await;
    let mug = app.create_product(1250, 10).await;
    let lamp = app.create_product(4999, 3).await;

    let response = app
        .post_json("/orders", &order_body("alice", &[(mug, 2), (lamp, 1)]))
        .await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let correlation = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = assert_json(response, 201).await;

    let order_id: Uuid = body["order_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(order_id.get_version_num(), 7);
    assert_eq!(location, format!("/orders/{order_id}"));
    assert_eq!(body["status"], "PENDING");
    assert_eq!(body["version"], 1);

    let events = app.events(order_id).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(body["position"], event.global_position);
    assert_eq!(event.stream_type, "orders");
    assert_eq!(event.event_type, "OrderPlaced");
    assert_eq!(event.payload["user_id"], "alice");
    assert_eq!(event.payload["payment_token"], "tok_visa");
    assert_eq!(event.payload["total_cents"], 2 * 1250 + 4999);
    assert_eq!(
        event.payload["lines"],
        json!([
            {"product_id": mug, "quantity": 2, "unit_price_cents": 1250},
            {"product_id": lamp, "quantity": 1, "unit_price_cents": 4999},
        ])
    );
    assert_eq!(event.metadata.correlation_id.to_string(), correlation);
    assert_eq!(event.metadata.causation_id, event.metadata.correlation_id);
    assert_eq!(
        app.stream_rows(order_id).await,
        vec![(1, event.global_position, true)]
    );
}

#[tokio::test]
async fn order_rules_are_422_problems_without_events() {
    let app = spawn_app().await;
    let product = app.create_product(100, 10).await;
    let many: Vec<(Uuid, i64)> = (0..51).map(|_| (Uuid::now_v7(), 1)).collect();
    let cases = [
        (
            order_body("alice", &[(product, 0)]),
            "quantity-out-of-range",
        ),
        (
            order_body("alice", &[(product, 1001)]),
            "quantity-out-of-range",
        ),
        (
            order_body("alice", &[(product, -1)]),
            "quantity-out-of-range",
        ),
        (order_body("alice", &many), "too-many-lines"),
        (order_body("alice", &[]), "no-lines"),
        (
            order_body("alice", &[(product, 1), (product, 2)]),
            "duplicate-product",
        ),
        (order_body("", &[(product, 1)]), "invalid-user-id"),
        (order_body("   ", &[(product, 1)]), "invalid-user-id"),
        (
            order_body(&"u".repeat(65), &[(product, 1)]),
            "invalid-user-id",
        ),
        (
            json!({"user_id": "alice", "lines": [{"product_id": product, "quantity": 1}],
                   "payment": {"token": " "}}),
            "empty-payment-token",
        ),
    ];
    for (body, slug) in cases {
        let problem = assert_problem(app.post_json("/orders", &body).await, 422).await;
        assert_eq!(
            problem["type"],
            format!("urn:orders:problem:{slug}"),
            "{body}"
        );
    }
    // The limits themselves are accepted.
    let edge = order_body(&"u".repeat(64), &[(product, 1000)]);
    assert_json(app.post_json("/orders", &edge).await, 201).await;
    assert_eq!(app.counts().await.events, 2, "registration + one order");
}

#[tokio::test]
async fn ordering_an_unknown_product_is_422_naming_it() {
    let app = spawn_app().await;
    let known = app.create_product(100, 10).await;
    let unknown = Uuid::now_v7();

    let response = app
        .post_json("/orders", &order_body("alice", &[(known, 1), (unknown, 2)]))
        .await;
    let problem = assert_problem(response, 422).await;

    assert_eq!(problem["type"], "urn:orders:problem:unknown-product");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&unknown.to_string()), "{detail}");
    assert!(!detail.contains(&known.to_string()), "{detail}");
    assert_eq!(app.counts().await.events, 1);
}

#[tokio::test]
async fn client_sent_prices_are_refused_and_never_used() {
    let app = spawn_app().await;
    let product = app.create_product(100, 10).await;

    let in_line = json!({"user_id": "alice",
        "lines": [{"product_id": product, "quantity": 1, "unit_price_cents": 1}],
        "payment": {"token": "tok"}});
    let problem = assert_problem(app.post_json("/orders", &in_line).await, 400).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("unit_price_cents"));

    let at_top = json!({"user_id": "alice", "total_cents": 1,
        "lines": [{"product_id": product, "quantity": 1}], "payment": {"token": "tok"}});
    assert_problem(app.post_json("/orders", &at_top).await, 400).await;

    assert_eq!(app.counts().await.events, 1, "only the registration");
}

#[tokio::test]
async fn an_order_without_payment_is_400() {
    let app = spawn_app().await;
    let product = app.create_product(100, 10).await;

    let body = json!({"user_id": "alice", "lines": [{"product_id": product, "quantity": 1}]});
    assert_problem(app.post_json("/orders", &body).await, 400).await;
}
