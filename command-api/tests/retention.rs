//! Idempotency keys expire after the retry window: a key used again later
//! is a new command (whatever its body), and expired records are pruned
//! without touching the ones still in the window.

mod common;

use std::time::Duration;

use command_api::{AppState, WriterSettings};
use common::{assert_json, spawn_app_with_state, TestApp};
use serde_json::json;
use testkit::TestDatabase;

const WINDOW: Duration = Duration::from_secs(1);

async fn app_with_window() -> TestApp {
    let db = TestDatabase::create().await;
    let settings = WriterSettings {
        idempotency_retention: WINDOW,
        ..WriterSettings::default()
    };
    let state = AppState::with_settings(db.pool.clone(), settings);
    spawn_app_with_state(db, state).await
}

async fn register(app: &TestApp, key: &str, name: &str) -> reqwest::Response {
    app.post(
        "/products",
        &json!({"name": name, "price_cents": 100, "initial_stock": 1}),
    )
    .header("Idempotency-Key", key)
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn a_key_used_again_after_the_window_is_a_new_command() {
    let app = app_with_window().await;
    let first = assert_json(register(&app, "k-1", "Mug").await, 201).await;
    let replay = register(&app, "k-1", "Mug").await;
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    assert_eq!(
        assert_json(replay, 201).await,
        first,
        "a replay within the window"
    );

    tokio::time::sleep(WINDOW + Duration::from_millis(200)).await;
    let again = register(&app, "k-1", "Mug").await;
    assert!(again.headers().get("idempotency-replayed").is_none());
    let again = assert_json(again, 201).await;
    assert_ne!(again["product_id"], first["product_id"], "a new product");

    // Another body after expiry is not "the key reused with another body".
    tokio::time::sleep(WINDOW + Duration::from_millis(200)).await;
    let other = assert_json(register(&app, "k-1", "Teapot").await, 201).await;
    assert_ne!(other["product_id"], again["product_id"]);
    // ...and the new record is replayed like any other, within its window.
    let replay = register(&app, "k-1", "Teapot").await;
    assert_eq!(assert_json(replay, 201).await, other);
    let counts = app.counts().await;
    assert_eq!(counts.events, 3, "three registrations");
    assert_eq!(counts.keys, 1, "one record per key, replaced on expiry");
}

#[tokio::test]
async fn pruning_deletes_expired_records_only() {
    let app = app_with_window().await;
    assert_json(register(&app, "old", "Mug").await, 201).await;
    tokio::time::sleep(WINDOW + Duration::from_millis(200)).await;
    assert_json(register(&app, "new", "Cup").await, 201).await;

    let pruned = command_api::idempotency::prune_expired(&app.db.pool, WINDOW, 10)
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT idempotency_key FROM command.idempotency_keys")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(keys, ["new"]);
    // The kept key still replays.
    let replay = register(&app, "new", "Cup").await;
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
}
