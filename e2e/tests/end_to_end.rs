//! The whole write → log → Kafka → projector → query path over HTTP, then a
//! replay from the log that must give identical answers, then more writes
//! that the live projector must carry on with after the swap.

use e2e::System;
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Ids {
    products: Vec<String>,
    orders: Vec<String>,
    users: Vec<&'static str>,
}

/// Every answer the query API gives about the entities in `ids`.
async fn snapshot(system: &System, ids: &Ids) -> Vec<(String, StatusCode, Value)> {
    let mut paths = vec!["/products?limit=100".to_owned()];
    paths.extend(ids.products.iter().map(|id| format!("/products/{id}")));
    paths.extend(ids.orders.iter().map(|id| format!("/orders/{id}")));
    paths.extend(
        ids.users
            .iter()
            .map(|user| format!("/users/{user}/orders?limit=100")),
    );
    let mut answers = Vec::new();
    for path in paths {
        let (status, body) = system.query(&path).await;
        answers.push((path, status, body));
    }
    answers
}

#[tokio::test]
async fn commands_reach_the_query_api_and_a_replay_gives_identical_answers() {
    let system = System::start_with(e2e::Options {
        saga: false,
        ..e2e::Options::default()
    })
    .await;

    let (status, widget) = system
        .command(
            "/products",
            json!({"name": "Widget", "price_cents": 1250, "initial_stock": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{widget}");
    let (status, gadget) = system
        .command(
            "/products",
            json!({"name": "Gadget", "price_cents": 999, "initial_stock": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{gadget}");
    let widget_id = widget["product_id"].as_str().unwrap().to_owned();
    let gadget_id = gadget["product_id"].as_str().unwrap().to_owned();

    let (status, restocked) = system
        .command(
            &format!("/products/{widget_id}/restock"),
            json!({"quantity": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{restocked}");
    assert_eq!(restocked["version"], 2);

    let mut orders = Vec::new();
    for (user, lines) in [
        (
            "alice",
            json!([{"product_id": widget_id, "quantity": 2}, {"product_id": gadget_id, "quantity": 1}]),
        ),
        ("alice", json!([{"product_id": gadget_id, "quantity": 2}])),
        ("bob", json!([{"product_id": widget_id, "quantity": 7}])),
    ] {
        let (status, placed) = system
            .command(
                "/orders",
                json!({"user_id": user, "lines": lines, "payment": {"token": "tok_ok"}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{placed}");
        assert_eq!(placed["status"], "PENDING");
        orders.push(placed["order_id"].as_str().unwrap().to_owned());
    }

    // Read-your-writes through the whole pipeline.
    let product = system
        .query_at_version(&format!("/products/{widget_id}"), 2)
        .await;
    assert_eq!(product["name"], "Widget");
    assert_eq!(product["price_cents"], 1250);
    assert_eq!(product["available"], 15);
    let first = system
        .query_at_version(&format!("/orders/{}", orders[0]), 1)
        .await;
    assert_eq!(first["user_id"], "alice");
    assert_eq!(first["status"], "PENDING");
    assert_eq!(
        first["total_cents"],
        2 * 1250 + 999,
        "prices come from the catalog"
    );
    assert_eq!(
        first["lines"],
        json!([
            {"product_id": widget_id, "quantity": 2, "unit_price_cents": 1250},
            {"product_id": gadget_id, "quantity": 1, "unit_price_cents": 999}
        ])
    );
    for order in &orders {
        system
            .query_at_version(&format!("/orders/{order}"), 1)
            .await;
    }
    let (_, alice) = system.query("/users/alice/orders").await;
    let listed: Vec<&str> = alice["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [orders[1].as_str(), orders[0].as_str()],
        "newest first"
    );

    let ids = Ids {
        products: vec![widget_id.clone(), gadget_id.clone()],
        orders: orders.clone(),
        users: vec!["alice", "bob"],
    };
    let before = snapshot(&system, &ids).await;

    let summary = projector::replay(
        &system.db.pool,
        &projector::ReplayOptions {
            progress: projector::ProgressMode::Hidden,
            ..projector::ReplayOptions::default()
        },
    )
    .await
    .expect("replay");
    assert!(summary.events >= 6, "{summary:?}");
    let after = snapshot(&system, &ids).await;
    assert_eq!(before, after, "replay must rebuild identical read models");

    // The live projector carries on after the swap.
    let (status, _) = system
        .command(
            &format!("/products/{gadget_id}/restock"),
            json!({"quantity": 4}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let gadget = system
        .query_at_version(&format!("/products/{gadget_id}"), 2)
        .await;
    assert_eq!(gadget["available"], 7);
    let (status, placed) = system
        .command("/orders", json!({"user_id": "bob", "lines": [{"product_id": gadget_id, "quantity": 1}], "payment": {"token": "tok_ok"}}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let order_id = placed["order_id"].as_str().unwrap();
    let order = system
        .query_at_version(&format!("/orders/{order_id}"), 1)
        .await;
    assert_eq!(order["total_cents"], 999);
    let (_, bob) = system.query("/users/bob/orders").await;
    assert_eq!(bob["orders"].as_array().unwrap().len(), 2);
}
