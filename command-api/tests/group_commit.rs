//! Group commit: commands queued while a batch runs are decided and
//! appended together in one transaction, and each one that fails (refused,
//! stale `If-Match`, lost race, unknown stream) fails alone.

mod common;

use std::time::Duration;

use command_api::{AppState, WriterSettings};
use common::{order_body, spawn_app_with_state, TestApp};
use domain::product::ProductEvent;
use domain::DomainEvent;
use eventstore::{ExpectedVersion, Metadata, NewEvent};
use serde_json::json;
use testkit::TestDatabase;
use uuid::Uuid;

/// The app with a single writer, so every command shares one queue.
async fn one_writer_app() -> (TestApp, AppState) {
    let db = TestDatabase::create().await;
    let settings = WriterSettings {
        writers: 1,
        ..WriterSettings::default()
    };
    let state = AppState::with_settings(db.pool.clone(), settings);
    (spawn_app_with_state(db, state.clone()).await, state)
}

/// The transaction ids that wrote the events of `streams`.
async fn writing_transactions(app: &TestApp, streams: &[Uuid]) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT DISTINCT xmin::text::bigint FROM eventstore.events
         WHERE stream_id = ANY($1) ORDER BY 1",
    )
    .bind(streams)
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

/// Makes every append to `stream` lose its race, as if another process
/// always got there first. Installed by the owner role: the app role may
/// not put triggers on the log's tables.
async fn make_appends_lose(app: &TestApp, stream: Uuid) {
    let owner = app.db.owner_pool().await;
    for statement in [
        format!(
            "CREATE FUNCTION lose_race() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.stream_id = '{stream}' THEN RETURN NULL; END IF; RETURN NEW; END $$"
        ),
        "CREATE TRIGGER lose BEFORE UPDATE ON eventstore.streams
         FOR EACH ROW EXECUTE FUNCTION lose_race()"
            .to_owned(),
    ] {
        sqlx::query(&statement).execute(&owner).await.unwrap();
    }
}

#[tokio::test]
async fn a_group_commits_together_and_each_failure_fails_alone() {
    let (app, state) = one_writer_app().await;
    let blocker = app.create_product(100, 1).await;
    let a = app.create_product(250, 10).await;
    let b = app.create_product(100, 1).await;
    let c = app.create_product(100, 1).await;
    let d = app.create_product(100, 1).await;
    make_appends_lose(&app, d).await;

    // Hold the blocker's stream row, so the writer's next batch waits on it
    // while the group queues up behind.
    let mut holder = app.db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM eventstore.streams WHERE stream_id = $1 FOR UPDATE")
        .bind(blocker)
        .execute(&mut *holder)
        .await
        .unwrap();
    let blocked = tokio::spawn({
        let request = app.post(
            &format!("/products/{blocker}/restock"),
            &json!({"quantity": 1}),
        );
        async move { request.send().await.unwrap().status().as_u16() }
    });
    wait_for_a_lock_wait(&app).await;

    let restock = |id: Uuid, quantity: i64| {
        app.post(
            &format!("/products/{id}/restock"),
            &json!({ "quantity": quantity }),
        )
    };
    let new_product = Uuid::now_v7();
    let requests = vec![
        restock(a, 1),
        restock(a, 2),
        restock(b, 1).header("If-Match", "\"5\""),
        restock(c, 0),
        restock(d, 1).header("If-Match", "\"1\""),
        restock(Uuid::now_v7(), 1),
        app.post(
            "/products",
            &json!({"name": "New", "price_cents": 10, "initial_stock": 0, "product_id": new_product}),
        )
        .header("Idempotency-Key", "group-register"),
        app.post("/orders", &order_body("alice", &[(a, 3)])),
    ];
    let count = requests.len();
    let group = tokio::spawn(futures::future::join_all(requests.into_iter().map(
        |r| async move {
            let response = r.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        },
    )));
    wait_until(|| state.queued_commands() == count).await;
    holder.rollback().await.unwrap();

    assert_eq!(blocked.await.unwrap(), 200);
    let answers = group.await.unwrap();
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(
        statuses,
        [200, 200, 412, 422, 412, 404, 201, 201],
        "{answers:#?}"
    );
    // Two commands on one stream in one batch are ordered, not conflicting.
    assert_eq!(answers[0].1["version"], 2);
    assert_eq!(answers[1].1["version"], 3);
    assert_eq!(
        answers[3].1["type"],
        "urn:orders:problem:non-positive-quantity"
    );
    assert_eq!(answers[4].1["type"], "urn:orders:problem:version-mismatch");
    assert!(answers[1].1["position"].as_i64() > answers[0].1["position"].as_i64());

    // Everything that succeeded in the group committed in one transaction,
    // with the idempotency record; the blocked command in another.
    let order_id: Uuid = answers[7].1["order_id"].as_str().unwrap().parse().unwrap();
    let group_tx = writing_transactions(&app, &[a, new_product, order_id]).await;
    assert_eq!(
        group_tx.len(),
        2,
        "a's registration, then the group: {group_tx:?}"
    );
    let record_tx: i64 = sqlx::query_scalar(
        "SELECT xmin::text::bigint FROM command.idempotency_keys WHERE idempotency_key = 'group-register'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(record_tx, group_tx[1]);
    assert_eq!(
        writing_transactions(&app, &[new_product, order_id]).await,
        [group_tx[1]]
    );
    assert_ne!(
        writing_transactions(&app, &[blocker]).await.last(),
        Some(&group_tx[1])
    );
    // Nothing written for the failures.
    assert_eq!(app.events(b).await.len(), 1);
    assert_eq!(app.events(c).await.len(), 1);
    assert_eq!(app.events(d).await.len(), 1);

    // The order was priced and placed against a's stream as of the batch.
    assert_eq!(answers[7].1["status"], "PENDING");
    let replay = app
        .post(
            "/products",
            &json!({"name": "New", "price_cents": 10, "initial_stock": 0, "product_id": new_product}),
        )
        .header("Idempotency-Key", "group-register")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 201);
    assert_eq!(
        replay.json::<serde_json::Value>().await.unwrap(),
        answers[6].1
    );
}

#[tokio::test]
async fn a_command_whose_stream_keeps_moving_is_retried_then_409() {
    let (app, _state) = one_writer_app().await;
    let product = app.create_product(100, 1).await;
    let other = app.create_product(100, 1).await;
    make_appends_lose(&app, product).await;

    let (lost, won) = tokio::join!(app.restock(product, 1), app.restock(other, 1));
    assert_eq!(lost.status(), 409);
    assert_eq!(won.status(), 200);
    assert_eq!(app.events(product).await.len(), 1);
    assert_eq!(app.events(other).await.len(), 2);
}

/// Waits until a session of the test's database waits for a lock.
/// Another writer's restock of `product`, inside its transaction `tx` (the
/// saga appends to product streams the same way).
async fn restock_in(tx: &mut sqlx::PgConnection, product: Uuid) {
    let event = NewEvent::from_domain(&ProductEvent::ProductRestocked { quantity: 1 });
    eventstore::append(
        tx,
        ProductEvent::STREAM_TYPE,
        product,
        ExpectedVersion::Any,
        &[event],
        &Metadata::for_command(Uuid::now_v7()),
    )
    .await
    .expect("append");
}

/// The statements of the sessions waiting for a lock.
async fn lock_waits(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT query FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_stream_that_lost_a_race_is_locked_before_it_is_read_again() {
    let (app, _state) = one_writer_app().await;
    let product = app.create_product(100, 1).await;
    let restock = || {
        let request = app.post(
            &format!("/products/{product}/restock"),
            &json!({"quantity": 10}),
        );
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        })
    };

    // Another writer holds the stream: the command reads version 1 unlocked,
    // then its append waits; the other writer moves the stream and commits,
    // so the append loses the race and the command is retried.
    let mut other = app.db.pool.begin().await.unwrap();
    eventstore::lock_streams(&mut other, &[product])
        .await
        .unwrap();
    let first = restock();
    wait_for_a_lock_wait(&app).await;
    let waits = lock_waits(&app).await;
    assert!(
        waits.iter().all(|query| !query.contains("FOR UPDATE")),
        "a stream that never lost a race is read without a lock: {waits:?}"
    );
    restock_in(&mut other, product).await;
    other.commit().await.unwrap();
    let (status, body) = first.await.unwrap();
    assert_eq!((status, body["version"].as_i64()), (200, Some(3)), "{body}");

    // Next time the command queues on the stream's lock before reading, so
    // the other writer's append cannot make it lose again.
    let mut other = app.db.pool.begin().await.unwrap();
    eventstore::lock_streams(&mut other, &[product])
        .await
        .unwrap();
    let second = restock();
    wait_for_a_lock_wait(&app).await;
    let waits = lock_waits(&app).await;
    assert!(
        waits.iter().any(|query| query.contains("FOR UPDATE")),
        "the command waits on the lock before it reads: {waits:?}"
    );
    restock_in(&mut other, product).await;
    other.commit().await.unwrap();
    let (status, body) = second.await.unwrap();
    assert_eq!((status, body["version"].as_i64()), (200, Some(5)), "{body}");
    assert_eq!(app.events(product).await.len(), 5);
}

async fn wait_for_a_lock_wait(app: &TestApp) {
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no session waited for the lock within 5 s");
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 5 s");
}
