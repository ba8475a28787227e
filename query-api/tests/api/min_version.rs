use std::time::{Duration, Instant};

use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::{now_micros, OrderSeed, ProductSeed, TestApp};
use query_api::Settings;

fn waiting_at_most(wait: Duration) -> Settings {
    Settings {
        min_version_wait: wait,
        ..Settings::default()
    }
}

#[tokio::test]
async fn satisfied_min_version_answers_immediately() {
    let app = TestApp::spawn_with(waiting_at_most(Duration::from_secs(5))).await;
    let product = ProductSeed {
        version: 3,
        ..ProductSeed::named("kettle")
    };
    app.insert_product(&product).await;

    for min_version in [0, 2, 3] {
        let started = Instant::now();
        let reply = app
            .get(&format!(
                "/products/{}?min_version={min_version}",
                product.product_id
            ))
            .await;

        assert!(
            started.elapsed() < Duration::from_secs(1),
            "waited for nothing"
        );
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["version"], 3);
        assert_eq!(reply.header("x-read-model-stale"), None);
        assert_eq!(reply.header("etag"), Some("\"3\""));
    }
}

#[tokio::test]
async fn product_read_waits_for_the_projector_to_catch_up() {
    let app = TestApp::spawn_with(waiting_at_most(Duration::from_secs(5))).await;
    let product = ProductSeed::named("teapot");
    app.insert_product(&product).await;
    let (pool, id) = (app.db.pool.clone(), product.product_id);
    let projector = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        sqlx::query(
            "UPDATE read.products SET available = available - 3, reserved = 3, version = 2 \
             WHERE product_id = $1",
        )
        .bind(id)
        .execute(&pool)
        .await
        .expect("apply version 2");
    });

    let started = Instant::now();
    let reply = app.get(&format!("/products/{id}?min_version=2")).await;
    let elapsed = started.elapsed();
    projector.await.unwrap();

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["version"], 2);
    assert_eq!(reply.body["reserved"], 3);
    assert_eq!(reply.header("x-read-model-stale"), None);
    assert_eq!(reply.header("x-read-model-version"), Some("2"));
    assert!(
        elapsed >= Duration::from_millis(190),
        "answered after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "answered after {elapsed:?}"
    );
}

#[tokio::test]
async fn order_read_waits_for_a_row_the_projector_has_not_written_yet() {
    let app = TestApp::spawn_with(waiting_at_most(Duration::from_secs(5))).await;
    let order = OrderSeed::of("hana", now_micros());
    let id = order.order_id;
    let projector = {
        let db_pool = app.db.pool.clone();
        let order = order.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            sqlx::query(
                "INSERT INTO read.orders (order_id, user_id, status, lines, total_cents, \
                 version, placed_at, updated_at) VALUES ($1, $2, 'PENDING', '[]', 0, 1, $3, $3)",
            )
            .bind(order.order_id)
            .bind(&order.user_id)
            .bind(order.placed_at)
            .execute(&db_pool)
            .await
            .expect("project the order");
        })
    };

    let reply = app.get(&format!("/orders/{id}?min_version=1")).await;
    projector.await.unwrap();

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["order_id"], id.to_string());
    assert_eq!(reply.header("x-read-model-stale"), None);
}

#[tokio::test]
async fn unreached_min_version_answers_stale_after_the_configured_wait() {
    let wait = Duration::from_millis(400);
    let app = TestApp::spawn_with(waiting_at_most(wait)).await;
    let order = OrderSeed::of("ivan", now_micros());
    app.insert_order(&order).await;

    let started = Instant::now();
    let reply = app
        .get(&format!("/orders/{}?min_version=5", order.order_id))
        .await;
    let elapsed = started.elapsed();

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["version"], 1, "answers with what is there");
    assert_eq!(reply.header("x-read-model-stale"), Some("true"));
    assert_eq!(reply.header("etag"), Some("\"1\""));
    assert_eq!(reply.header("x-read-model-version"), Some("1"));
    assert!(elapsed >= wait, "answered after {elapsed:?}");
    assert!(
        elapsed < wait + Duration::from_millis(1500),
        "answered after {elapsed:?}"
    );
}

#[tokio::test]
async fn missing_row_behind_min_version_is_a_stale_404() {
    let wait = Duration::from_millis(300);
    let app = TestApp::spawn_with(waiting_at_most(wait)).await;

    let started = Instant::now();
    let reply = app
        .get(&format!("/products/{}?min_version=1", Uuid::now_v7()))
        .await;

    reply.assert_problem(StatusCode::NOT_FOUND);
    assert_eq!(reply.header("x-read-model-stale"), Some("true"));
    assert!(started.elapsed() >= wait);
}
