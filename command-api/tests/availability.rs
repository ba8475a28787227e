//! Behaviour while PostgreSQL is unreachable (simulated with a TCP proxy).

mod common;

use std::time::{Duration, Instant};

use common::{assert_json, assert_problem, order_body, spawn_app_with_pool, TestApp};
use platform::db::DbConfig;
use serde_json::json;
use testkit::{TcpProxy, TestDatabase};

/// The app over a pool that reaches the test database through a proxy.
async fn spawn_app_behind_proxy() -> (TestApp, TcpProxy) {
    let db = TestDatabase::create().await;
    let proxy = TcpProxy::start(testkit::database::server_address(&db.url).await).await;
    let config = DbConfig {
        url: testkit::database::with_address(&db.url, proxy.address()),
        max_connections: 5,
        acquire_timeout_ms: 500,
    };
    let pool = platform::db::connect_lazy(&config).expect("proxied pool");
    (spawn_app_with_pool(db, pool).await, proxy)
}

#[tokio::test]
async fn commands_are_503_while_the_database_is_down_and_write_nothing() {
    let (app, proxy) = spawn_app_behind_proxy().await;
    let product = app.create_product(100, 5).await;
    let before = app.counts().await;

    proxy.cut();
    let started = Instant::now();
    let restock = app
        .post(
            &format!("/products/{product}/restock"),
            &json!({"quantity": 1}),
        )
        .header("Idempotency-Key", "while-down")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(restock, 503).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered quickly"
    );
    assert_eq!(problem["type"], "urn:orders:problem:dependency-unavailable");
    let order = app
        .post_json("/orders", &order_body("alice", &[(product, 1)]))
        .await;
    assert_problem(order, 503).await;
    let create = app
        .post_json(
            "/products",
            &json!({"name": "y", "price_cents": 1, "initial_stock": 1}),
        )
        .await;
    assert_problem(create, 503).await;

    proxy.restore();
    assert_eq!(app.counts().await, before, "nothing half-written");
    // A 503 is not recorded: the same key runs the command once the database is back.
    let retried = testkit::eventually(
        "the database to come back",
        Duration::from_secs(10),
        || async {
            let response = app
                .post(
                    &format!("/products/{product}/restock"),
                    &json!({"quantity": 1}),
                )
                .header("Idempotency-Key", "while-down")
                .send()
                .await
                .unwrap();
            (response.status() != 503).then_some(response)
        },
    )
    .await;
    assert_eq!(assert_json(retried, 200).await["version"], 2);
    assert_eq!(app.counts().await.keys, 1);
}

#[tokio::test]
async fn readiness_follows_the_database() {
    let (app, proxy) = spawn_app_behind_proxy().await;
    let ready = || app.client.get(app.url("/health/ready")).send();

    assert_json(ready().await.unwrap(), 200).await;

    proxy.cut();
    let started = Instant::now();
    assert_problem(ready().await.unwrap(), 503).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let live = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_json(live, 200).await;

    proxy.restore();
    testkit::eventually("readiness to recover", Duration::from_secs(10), || async {
        (ready().await.unwrap().status() == 200).then_some(())
    })
    .await;
}
