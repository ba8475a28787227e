//! Request handling shared by every endpoint: body and path rejections,
//! headers, correlation and trace metadata, health probes.

mod common;

use common::{assert_json, assert_problem, order_body, spawn_app};
use serde_json::json;

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn_app().await;

    for body in [&b"{\"name\": "[..], b"not json", b""] {
        let response = app
            .post_raw("/products", Some("application/json"), body.to_vec())
            .await;
        assert_problem(response, 400).await;
    }
    assert_eq!(app.counts().await.events, 0);
}

#[tokio::test]
async fn wrong_types_and_missing_fields_are_400_problems() {
    let app = spawn_app().await;
    let product = app.create_product(100, 1).await;
    let cases = [
        (
            "/products",
            json!({"name": "x", "price_cents": "12", "initial_stock": 1}),
        ),
        (
            "/products",
            json!({"name": "x", "price_cents": 1.5, "initial_stock": 1}),
        ),
        ("/products", json!({"name": "x", "initial_stock": 1})),
        (
            "/products",
            json!({"name": "x", "price_cents": 1, "initial_stock": 1, "product_id": "nope"}),
        ),
        ("/products", json!([1, 2])),
        (
            "/orders",
            json!({"user_id": "u", "lines": {}, "payment": {"token": "t"}}),
        ),
        (
            "/orders",
            json!({"user_id": 5, "lines": [], "payment": {"token": "t"}}),
        ),
        (
            "/orders",
            json!({"user_id": "u", "lines": [{"product_id": "x", "quantity": 1}], "payment": {"token": "t"}}),
        ),
        (
            "/orders",
            json!({"user_id": "u", "lines": [{"product_id": product}], "payment": {"token": "t"}}),
        ),
        (
            "/orders",
            json!({"user_id": "u", "lines": [{"product_id": product, "quantity": 1}], "payment": {}}),
        ),
    ];
    for (path, body) in cases {
        let response = app.post_json(path, &body).await;
        assert_problem(response, 400).await;
    }
    let restock = app
        .post_json(
            &format!("/products/{product}/restock"),
            &json!({"quantity": "many"}),
        )
        .await;
    assert_problem(restock, 400).await;
    assert_eq!(app.counts().await.events, 1, "only the registration");
}

/// PostgreSQL stores no U+0000 in text or jsonb: such a body is refused
/// before the write (found by the schemathesis run, which got a 500).
#[tokio::test]
async fn a_nul_character_in_a_string_is_a_400_problem_and_writes_nothing() {
    let app = spawn_app().await;
    let product = app.create_product(100, 5).await;
    let before = app.counts().await.events;
    for (path, body) in [
        (
            "/products",
            json!({"name": "Mug\u{0}", "price_cents": 1, "initial_stock": 1}),
        ),
        (
            "/orders",
            json!({"user_id": "a\u{0}", "lines": [{"product_id": product, "quantity": 1}],
                           "payment": {"token": "tok_ok"}}),
        ),
        (
            "/orders",
            json!({"user_id": "alice", "lines": [{"product_id": product, "quantity": 1}],
                           "payment": {"token": "\u{0}"}}),
        ),
    ] {
        let problem = assert_problem(app.post_json(path, &body).await, 400).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("NUL"),
            "{problem}"
        );
    }
    assert_eq!(app.counts().await.events, before);
}

#[tokio::test]
async fn a_non_uuid_path_id_is_a_400_problem() {
    let app = spawn_app().await;

    let response = app
        .post_json("/products/not-a-uuid/restock", &json!({"quantity": 1}))
        .await;

    let problem = assert_problem(response, 400).await;
    assert_eq!(problem["type"], "urn:orders:problem:malformed-request");
}

#[tokio::test]
async fn an_oversized_body_is_a_413_problem() {
    let app = spawn_app().await;
    let name = "n".repeat(70 * 1024);

    let response = app
        .post_json(
            "/products",
            &json!({"name": name, "price_cents": 1, "initial_stock": 1}),
        )
        .await;

    assert_problem(response, 413).await;
    assert_eq!(app.counts().await.events, 0);
}

#[tokio::test]
async fn a_body_without_json_content_type_is_a_415_problem() {
    let app = spawn_app().await;
    let body = br#"{"name": "x", "price_cents": 1, "initial_stock": 1}"#.to_vec();

    assert_problem(app.post_raw("/products", None, body.clone()).await, 415).await;
    assert_problem(
        app.post_raw("/products", Some("text/plain"), body).await,
        415,
    )
    .await;
    assert_eq!(app.counts().await.events, 0);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;

    let missing = app.post_json("/nowhere", &json!({})).await;
    assert_problem(missing, 404).await;
    let wrong_method = app.client.get(app.url("/products")).send().await.unwrap();
    assert_problem(wrong_method, 405).await;
}

#[tokio::test]
async fn malformed_command_headers_are_400_problems() {
    let app = spawn_app().await;
    let product = app.create_product(100, 1).await;
    let path = format!("/products/{product}/restock");
    let body = json!({"quantity": 1});

    for key in ["", "has space", &"k".repeat(256)] {
        let response = app
            .post(&path, &body)
            .header("Idempotency-Key", key)
            .send()
            .await
            .unwrap();
        assert_problem(response, 400).await;
    }
    for if_match in ["*", "\"abc\"", "-1", "W/\"1\""] {
        let response = app
            .post(&path, &body)
            .header("If-Match", if_match)
            .send()
            .await
            .unwrap();
        assert_problem(response, 400).await;
    }
    assert_eq!(app.counts().await.events, 1, "only the registration");
}

#[tokio::test]
async fn correlation_id_and_traceparent_are_recorded_in_event_metadata() {
    let app = spawn_app().await;
    let product = app.create_product(100, 5).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    let traced = app
        .post("/orders", &order_body("alice", &[(product, 1)]))
        .header("traceparent", traceparent)
        .header("Idempotency-Key", "order-123")
        .send()
        .await
        .unwrap();
    let correlation = traced.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = assert_json(traced, 201).await;
    let order_id = body["order_id"].as_str().unwrap().parse().unwrap();
    let event = &app.events(order_id).await[0];
    assert_eq!(event.metadata.correlation_id.to_string(), correlation);
    assert_eq!(event.metadata.causation_id.to_string(), correlation);
    assert_eq!(event.metadata.traceparent.as_deref(), Some(traceparent));
    assert_eq!(event.metadata.idempotency_key.as_deref(), Some("order-123"));

    // A malformed header is not stored: the command starts a trace of its
    // own (spans are not exported here), as it does without the header.
    let mut fresh_traces = Vec::new();
    for header in [Some("garbage"), None] {
        let mut request = app.post("/orders", &order_body("alice", &[(product, 1)]));
        if let Some(value) = header {
            request = request.header("traceparent", value);
        }
        let body = assert_json(request.send().await.unwrap(), 201).await;
        let order_id = body["order_id"].as_str().unwrap().parse().unwrap();
        let event = &app.events(order_id).await[0];
        let stored = event
            .metadata
            .traceparent
            .clone()
            .expect("a fresh traceparent");
        assert!(
            eventstore::trace::is_valid_traceparent(&stored),
            "{header:?}: {stored}"
        );
        assert_ne!(
            eventstore::trace::trace_id(Some(&stored)),
            eventstore::trace::trace_id(Some(traceparent)),
            "{header:?}"
        );
        assert_eq!(event.metadata.idempotency_key, None);
        assert_ne!(event.metadata.correlation_id.to_string(), correlation);
        fresh_traces.push(eventstore::trace::trace_id(Some(&stored)).map(str::to_owned));
    }
    assert_ne!(fresh_traces[0], fresh_traces[1], "one trace per command");
}

#[tokio::test]
async fn errors_also_carry_a_correlation_id() {
    let app = spawn_app().await;

    let response = app.post_raw("/products", None, "x").await;

    assert!(response.headers().contains_key("x-correlation-id"));
    assert_problem(response, 415).await;
}

#[tokio::test]
async fn health_probes_answer() {
    let app = spawn_app().await;

    let live = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_json(live, 200).await;
    let ready = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(assert_json(ready, 200).await["status"], "ready");
}
