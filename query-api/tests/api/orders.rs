use std::cmp::Reverse;
use std::collections::HashSet;

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{now_micros, timestamp, OrderSeed, TestApp};

#[tokio::test]
async fn order_is_returned_with_exactly_the_documented_fields() {
    let app = TestApp::spawn().await;
    let placed_at = now_micros() - Duration::minutes(5);
    let order = OrderSeed {
        status: "AWAITING_PAYMENT".to_owned(),
        version: 2,
        updated_at: placed_at + Duration::seconds(3),
        ..OrderSeed::of("alice", placed_at)
    };
    app.insert_order(&order).await;

    let reply = app.get(&format!("/orders/{}", order.order_id)).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("etag"), Some("\"2\""));
    assert_eq!(reply.header("x-read-model-version"), Some("2"));
    assert_eq!(reply.header("x-read-model-stale"), None);
    let mut body = reply.body;
    assert_eq!(timestamp(&body["placed_at"]), order.placed_at);
    assert_eq!(timestamp(&body["updated_at"]), order.updated_at);
    let object = body.as_object_mut().unwrap();
    object.remove("placed_at");
    object.remove("updated_at");
    let [(p1, q1, u1), (p2, q2, u2)] = order.lines[..] else {
        unreachable!()
    };
    assert_eq!(
        body,
        json!({
            "order_id": order.order_id,
            "user_id": "alice",
            "status": "AWAITING_PAYMENT",
            "lines": [
                {"product_id": p1, "quantity": q1, "unit_price_cents": u1},
                {"product_id": p2, "quantity": q2, "unit_price_cents": u2},
            ],
            "total_cents": 2 * 1250 + 999,
            "version": 2,
            "payment": null,
        }),
        "reason is omitted while null; payment is null without a payment row"
    );
}

#[tokio::test]
async fn rejected_order_carries_its_reason() {
    let app = TestApp::spawn().await;
    let order = OrderSeed {
        status: "REJECTED".to_owned(),
        reason: Some("insufficient stock".to_owned()),
        version: 3,
        ..OrderSeed::of("bob", now_micros())
    };
    app.insert_order(&order).await;

    let reply = app.get(&format!("/orders/{}", order.order_id)).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["status"], "REJECTED");
    assert_eq!(reply.body["reason"], "insufficient stock");
}

#[tokio::test]
async fn user_orders_are_paginated_newest_first_without_gaps_or_duplicates() {
    let app = TestApp::spawn().await;
    let start = now_micros() - Duration::hours(1);
    let mut seeds = Vec::new();
    for i in 0..25 {
        // Every third order shares its timestamp with the previous one, so
        // ties are broken by order id.
        let minute = i - i / 3;
        seeds.push(OrderSeed::of("carol", start + Duration::minutes(minute)));
    }
    for seed in &seeds {
        app.insert_order(seed).await;
    }
    for i in 0..3 {
        app.insert_order(&OrderSeed::of("dave", start + Duration::minutes(i)))
            .await;
    }
    seeds.sort_by_key(|seed| Reverse((seed.placed_at, seed.order_id)));
    let expected: Vec<Uuid> = seeds.iter().map(|seed| seed.order_id).collect();

    let mut seen = Vec::new();
    let mut page_sizes = Vec::new();
    let mut path = "/users/carol/orders?limit=10".to_owned();
    loop {
        let reply = app.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let orders = reply.body["orders"].as_array().expect("orders array");
        page_sizes.push(orders.len());
        for order in orders {
            assert_eq!(order["user_id"], "carol");
            seen.push(order["order_id"].as_str().unwrap().parse::<Uuid>().unwrap());
        }
        match reply.body["next"].as_str() {
            Some(next) => path = format!("/users/carol/orders?limit=10&after={next}"),
            None => {
                assert!(reply.body["next"].is_null());
                break;
            }
        }
    }

    assert_eq!(page_sizes, [10, 10, 5]);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn listed_orders_have_the_single_order_shape_and_default_to_twenty() {
    let app = TestApp::spawn().await;
    let start = now_micros() - Duration::hours(1);
    for i in 0..21 {
        app.insert_order(&OrderSeed::of("erin", start + Duration::seconds(i)))
            .await;
    }

    let reply = app.get("/users/erin/orders").await;

    assert_eq!(reply.status, StatusCode::OK);
    let orders = reply.body["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 20);
    assert!(reply.body["next"].is_string());
    let newest = &orders[0];
    assert_eq!(
        timestamp(&newest["placed_at"]),
        start + Duration::seconds(20)
    );
    let single = app
        .get(&format!("/orders/{}", newest["order_id"].as_str().unwrap()))
        .await;
    assert_eq!(newest, &single.body);
}

#[tokio::test]
async fn unknown_user_has_an_empty_order_list() {
    let app = TestApp::spawn().await;
    app.insert_order(&OrderSeed::of("frank", Utc::now())).await;

    let reply = app.get("/users/nobody/orders").await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"orders": [], "next": null}));
}

#[tokio::test]
async fn user_ids_in_the_path_are_percent_decoded() {
    let app = TestApp::spawn().await;
    let order = OrderSeed::of("grace hopper@example.com", now_micros());
    app.insert_order(&order).await;

    let reply = app.get("/users/grace%20hopper%40example.com/orders").await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["orders"][0]["order_id"], json!(order.order_id));
}
