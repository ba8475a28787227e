//! `POST /products` and `POST /products/{id}/restock`.

mod common;

use common::{assert_json, assert_problem, spawn_app};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn register_product_returns_201_with_location_and_records_the_event() {
    let app = spawn_app().await;

    let response = app
        .post_json(
            "/products",
            &json!({"name": "  Blue mug ", "price_cents": 1250, "initial_stock": 7}),
        )
        .await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body = assert_json(response, 201).await;

    let product_id: Uuid = body["product_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(product_id.get_version_num(), 7, "server ids are UUIDv7");
    assert_eq!(location, format!("/products/{product_id}"));
    assert_eq!(body["version"], 1);

    let events = app.events(product_id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(body["position"], events[0].global_position);
    assert_eq!(events[0].stream_type, "inventory");
    assert_eq!(events[0].event_type, "ProductRegistered");
    assert_eq!(
        events[0].payload,
        json!({"name": "Blue mug", "price_cents": 1250, "initial_stock": 7})
    );
    assert_eq!(
        app.stream_rows(product_id).await,
        vec![(1, events[0].global_position, true)]
    );
}

#[tokio::test]
async fn register_product_uses_the_client_supplied_id() {
    let app = spawn_app().await;
    let product_id = Uuid::new_v4();

    let response = app
        .post_json(
            "/products",
            &json!({"name": "Lamp", "price_cents": 1, "initial_stock": 0, "product_id": product_id}),
        )
        .await;
    let body = assert_json(response, 201).await;

    assert_eq!(body["product_id"], product_id.to_string());
    assert_eq!(app.events(product_id).await.len(), 1);
}

#[tokio::test]
async fn registering_an_existing_product_id_is_422_without_new_events() {
    let app = spawn_app().await;
    let product_id = app.create_product(100, 1).await;

    let response = app
        .post_json(
            "/products",
            &json!({"name": "Again", "price_cents": 5, "initial_stock": 0, "product_id": product_id}),
        )
        .await;
    let problem = assert_problem(response, 422).await;

    assert_eq!(
        problem["type"],
        "urn:orders:problem:product-already-registered"
    );
    assert_eq!(app.events(product_id).await.len(), 1);
}

#[tokio::test]
async fn restock_returns_200_and_appends_the_next_dense_version() {
    let app = spawn_app().await;
    let product_id = app.create_product(100, 1).await;

    let first = assert_json(app.restock(product_id, 5).await, 200).await;
    let second = assert_json(app.restock(product_id, 3).await, 200).await;

    assert_eq!(first["product_id"], product_id.to_string());
    assert_eq!(first["version"], 2);
    assert_eq!(second["version"], 3);
    assert!(second["position"].as_i64() > first["position"].as_i64());
    let rows = app.stream_rows(product_id).await;
    let versions: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert!(rows.iter().all(|r| r.2), "every event has its outbox row");
    assert_eq!(rows[2].1, second["position"].as_i64().unwrap());
    let events = app.events(product_id).await;
    assert_eq!(events[2].event_type, "ProductRestocked");
    assert_eq!(events[2].payload, json!({"quantity": 3}));
}

#[tokio::test]
async fn restock_of_an_unknown_product_is_404() {
    let app = spawn_app().await;
    let product_id = Uuid::now_v7();

    let problem = assert_problem(app.restock(product_id, 5).await, 404).await;

    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains(&product_id.to_string()));
    assert_eq!(app.counts().await.events, 0);
}

#[tokio::test]
async fn restock_of_an_order_id_is_404() {
    let app = spawn_app().await;
    let product_id = app.create_product(100, 1).await;
    let order = assert_json(
        app.post_json("/orders", &common::order_body("u1", &[(product_id, 1)]))
            .await,
        201,
    )
    .await;
    let order_id = order["order_id"].as_str().unwrap();

    let response = app
        .post_json(
            &format!("/products/{order_id}/restock"),
            &json!({"quantity": 1}),
        )
        .await;

    assert_problem(response, 404).await;
}

#[tokio::test]
async fn product_rules_are_422_problems_without_events() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"name": "x", "price_cents": 0, "initial_stock": 1}),
            "non-positive-price",
        ),
        (
            json!({"name": "x", "price_cents": -5, "initial_stock": 1}),
            "non-positive-price",
        ),
        (
            json!({"name": "x", "price_cents": 5, "initial_stock": -1}),
            "negative-initial-stock",
        ),
        (
            json!({"name": "   ", "price_cents": 5, "initial_stock": 1}),
            "empty-name",
        ),
        (
            json!({"name": "n".repeat(201), "price_cents": 5, "initial_stock": 1}),
            "name-too-long",
        ),
    ];
    for (body, slug) in cases {
        let problem = assert_problem(app.post_json("/products", &body).await, 422).await;
        assert_eq!(
            problem["type"],
            format!("urn:orders:problem:{slug}"),
            "{body}"
        );
    }

    let product_id = app.create_product(100, 1).await;
    for quantity in [0, -3] {
        let problem = assert_problem(app.restock(product_id, quantity).await, 422).await;
        assert_eq!(problem["type"], "urn:orders:problem:non-positive-quantity");
    }
    assert_eq!(app.counts().await.events, 1, "only the registration");
}
