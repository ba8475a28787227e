//! `Idempotency-Key`: replays, reuse with another body, in-flight requests.

mod common;

use common::{assert_json, assert_problem, order_body, spawn_app};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn a_replay_returns_the_identical_response_without_new_events() {
    let app = spawn_app().await;
    let product = app.create_product(100, 10).await;
    let body = order_body("alice", &[(product, 2)]);
    let send = || {
        app.post("/orders", &body)
            .header("Idempotency-Key", "place-1")
            .send()
    };

    let first = send().await.unwrap();
    let first_location = first.headers()["location"].clone();
    let first_status = first.status();
    let first_body = first.text().await.unwrap();
    let counts = app.counts().await;

    let second = send().await.unwrap();
    assert_eq!(second.status(), first_status);
    assert_eq!(second.headers()["location"], first_location);
    assert_eq!(second.headers()["idempotency-replayed"], "true");
    assert_eq!(
        second.headers()["content-type"],
        "application/json",
        "replays keep the content type"
    );
    assert_eq!(
        second.text().await.unwrap(),
        first_body,
        "byte-identical body"
    );

    assert_eq!(first_status, 201);
    assert_eq!(app.counts().await, counts, "no new events");
    assert_eq!(counts.keys, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let app = spawn_app().await;
    let product = app.create_product(100, 10).await;
    let path = format!("/products/{product}/restock");

    let first = app
        .post(&path, &json!({"quantity": 1}))
        .header("Idempotency-Key", "restock-1")
        .send()
        .await
        .unwrap();
    assert_json(first, 200).await;
    let other = app
        .post(&path, &json!({"quantity": 2}))
        .header("Idempotency-Key", "restock-1")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(other, 422).await;
    assert_eq!(problem["type"], "urn:orders:problem:idempotency-key-reused");

    let other_path = app
        .post("/orders", &order_body("alice", &[(product, 1)]))
        .header("Idempotency-Key", "restock-1")
        .send()
        .await
        .unwrap();
    assert_problem(other_path, 422).await;
    assert_eq!(app.events(product).await.len(), 2);
}

#[tokio::test]
async fn concurrent_identical_requests_place_exactly_one_order() {
    let app = spawn_app().await;
    let product = app.create_product(100, 10).await;
    let body = order_body("alice", &[(product, 1)]);

    let requests = (0..20).map(|_| {
        app.post("/orders", &body)
            .header("Idempotency-Key", "one-order")
            .send()
    });
    let responses = futures::future::join_all(requests).await;

    let mut placed = Vec::new();
    for response in responses {
        let response = response.unwrap();
        match response.status().as_u16() {
            201 => placed.push(response.json::<serde_json::Value>().await.unwrap()),
            409 => {
                let problem = assert_problem(response, 409).await;
                assert_eq!(
                    problem["type"],
                    "urn:orders:problem:idempotency-key-in-flight"
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(!placed.is_empty());
    assert!(placed.iter().all(|b| b == &placed[0]), "{placed:?}");
    let orders: i64 =
        sqlx::query_scalar("SELECT count(*) FROM eventstore.events WHERE stream_type = 'orders'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(orders, 1);
    assert_eq!(app.counts().await.keys, 1);
}

#[tokio::test]
async fn a_key_in_flight_is_409() {
    let app = spawn_app().await;
    let product = app.create_product(100, 10).await;
    // Another transaction holds the key's lock, as a concurrent request would.
    let mut holder = app.db.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(command_api::idempotency::lock_key("busy"))
        .execute(&mut *holder)
        .await
        .unwrap();

    let response = app
        .post("/orders", &order_body("alice", &[(product, 1)]))
        .header("Idempotency-Key", "busy")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 409).await;
    assert_eq!(
        problem["type"],
        "urn:orders:problem:idempotency-key-in-flight"
    );
    assert_eq!(app.counts().await.keys, 0);

    holder.rollback().await.unwrap();
    let retried = app
        .post("/orders", &order_body("alice", &[(product, 1)]))
        .header("Idempotency-Key", "busy")
        .send()
        .await
        .unwrap();
    assert_json(retried, 201).await;
}

#[tokio::test]
async fn refusals_are_recorded_and_replayed_faithfully() {
    let app = spawn_app().await;
    let product = Uuid::now_v7();
    let path = format!("/products/{product}/restock");
    let restock = || {
        app.post(&path, &json!({"quantity": 1}))
            .header("Idempotency-Key", "early-restock")
            .send()
    };

    let first = restock().await.unwrap();
    let first_body = assert_problem(first, 404).await;
    // The product appears afterwards, but the key's outcome is fixed.
    let created = app
        .post_json(
            "/products",
            &json!({"name": "x", "price_cents": 1, "initial_stock": 0, "product_id": product}),
        )
        .await;
    assert_json(created, 201).await;

    let replay = restock().await.unwrap();
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    assert_eq!(assert_problem(replay, 404).await, first_body);
    assert_eq!(app.events(product).await.len(), 1);

    let invalid = || {
        app.post("/orders", &order_body("", &[(product, 1)]))
            .header("Idempotency-Key", "bad-order")
            .send()
    };
    let first = assert_problem(invalid().await.unwrap(), 422).await;
    assert_eq!(assert_problem(invalid().await.unwrap(), 422).await, first);
    assert_eq!(app.counts().await.keys, 2);
}
