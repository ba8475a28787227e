//! Optimistic concurrency: `If-Match`, internal retries, and their limit.

mod common;

use common::{assert_json, assert_problem, order_body, spawn_app, TestApp};
use serde_json::json;
use uuid::Uuid;

/// Makes every append to an existing stream lose its race, as if another
/// writer always got there first: the guarded `UPDATE` of the stream row is
/// skipped, and each skipped update bumps the `lost_races` sequence (which,
/// unlike a table, is not rolled back with the attempt). Installed by the
/// owner role: the app role may not put triggers on the log's tables.
async fn make_every_append_lose(app: &TestApp) {
    let owner = app.db.owner_pool().await;
    for statement in [
        "CREATE SEQUENCE lost_races",
        "CREATE FUNCTION lose_race() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM nextval('lost_races'); RETURN NULL; END $$",
        "CREATE TRIGGER always_lose BEFORE UPDATE ON eventstore.streams
         FOR EACH ROW EXECUTE FUNCTION lose_race()",
        "GRANT USAGE, SELECT ON SEQUENCE lost_races TO orders",
    ] {
        sqlx::query(statement)
            .execute(&owner)
            .await
            .expect("install the losing trigger");
    }
}

async fn lost_races(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM lost_races")
        .fetch_one(&app.db.pool)
        .await
        .expect("read lost_races")
}

fn restock_path(product: Uuid) -> String {
    format!("/products/{product}/restock")
}

#[tokio::test]
async fn if_match_with_the_current_version_succeeds() {
    let app = spawn_app().await;
    let product = app.create_product(100, 1).await;
    let body = json!({"quantity": 2});

    let quoted = app
        .post(&restock_path(product), &body)
        .header("If-Match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(assert_json(quoted, 200).await["version"], 2);
    let bare = app
        .post(&restock_path(product), &body)
        .header("If-Match", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(assert_json(bare, 200).await["version"], 3);
}

#[tokio::test]
async fn if_match_with_a_stale_version_is_412_without_new_events() {
    let app = spawn_app().await;
    let product = app.create_product(100, 1).await;
    assert_json(app.restock(product, 1).await, 200).await;

    let stale = app
        .post(&restock_path(product), &json!({"quantity": 2}))
        .header("If-Match", "\"1\"")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(stale, 412).await;

    assert_eq!(problem["type"], "urn:orders:problem:version-mismatch");
    assert_eq!(app.events(product).await.len(), 2);
}

#[tokio::test]
async fn if_match_on_creation_must_name_version_zero() {
    let app = spawn_app().await;
    let product = json!({"name": "x", "price_cents": 1, "initial_stock": 1});

    let zero = app
        .post("/products", &product)
        .header("If-Match", "\"0\"")
        .send()
        .await
        .unwrap();
    assert_json(zero, 201).await;
    let other = app
        .post("/products", &product)
        .header("If-Match", "\"3\"")
        .send()
        .await
        .unwrap();
    assert_problem(other, 412).await;
    assert_eq!(app.counts().await.events, 1);
}

#[tokio::test]
async fn concurrent_restocks_all_succeed_with_dense_versions() {
    let app = spawn_app().await;
    let product = app.create_product(100, 0).await;

    let requests = (0..20).map(|_| app.restock(product, 1));
    let responses = futures::future::join_all(requests).await;

    let mut versions = Vec::new();
    for response in responses {
        versions.push(
            assert_json(response, 200).await["version"]
                .as_i64()
                .unwrap(),
        );
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=21).collect::<Vec<i64>>());
    let rows = app.stream_rows(product).await;
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=21).collect::<Vec<i64>>()
    );
    assert!(rows.iter().all(|r| r.2), "every event has its outbox row");
}

#[tokio::test]
async fn concurrent_orders_and_restocks_on_one_product_all_succeed() {
    let app = spawn_app().await;
    let product = app.create_product(100, 0).await;

    let restocks = futures::future::join_all((0..10).map(|_| app.restock(product, 1)));
    let orders = futures::future::join_all((0..10).map(|i| {
        app.post("/orders", &order_body(&format!("u{i}"), &[(product, 1)]))
            .send()
    }));
    let (restocks, orders) = tokio::join!(restocks, orders);

    for response in restocks {
        assert_json(response, 200).await;
    }
    for response in orders {
        assert_json(response.unwrap(), 201).await;
    }
    assert_eq!(app.counts().await.events, 21);
}

#[tokio::test]
async fn exhausted_retries_are_a_409_problem_without_new_events() {
    let app = spawn_app().await;
    let product = app.create_product(100, 1).await;
    make_every_append_lose(&app).await;

    let problem = assert_problem(app.restock(product, 1).await, 409).await;

    assert_eq!(problem["type"], "urn:orders:problem:concurrency-conflict");
    assert_eq!(lost_races(&app).await, 5, "five attempts, all lost");
    assert_eq!(app.events(product).await.len(), 1);
    assert_eq!(app.counts().await.outbox, 1);
}

#[tokio::test]
async fn a_lost_race_under_if_match_is_412_and_never_retried() {
    let app = spawn_app().await;
    let product = app.create_product(100, 1).await;
    make_every_append_lose(&app).await;

    let response = app
        .post(&restock_path(product), &json!({"quantity": 1}))
        .header("If-Match", "\"1\"")
        .send()
        .await
        .unwrap();

    assert_problem(response, 412).await;
    assert_eq!(lost_races(&app).await, 1, "a single attempt");
    assert_eq!(app.events(product).await.len(), 1);
}
