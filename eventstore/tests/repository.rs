//! The aggregate repository: cached state checked against the log,
//! snapshots used when valid and ignored when stale or undecodable, and the
//! batch append in which a conflicting stream fails alone.

use domain::aggregate::{Order, Product};
use domain::product::{ProductCommand, ProductEvent, ProductState};
use domain::Aggregate;
use eventstore::aggregate::CommandError;
use eventstore::{
    append, append_batch, LoadRequest, Metadata, NewEvent, Repository, RepositorySettings,
    StreamAppend, StreamOutcome,
};
use sqlx::PgPool;
use testkit::TestDatabase;
use uuid::Uuid;

fn meta() -> Metadata {
    Metadata::for_command(Uuid::now_v7())
}

fn repository(snapshot_every: i64) -> Repository {
    Repository::new(RepositorySettings {
        cache_capacity: 1_000,
        snapshot_every,
    })
}

/// Registers a product with `stock` units, through `repo`.
async fn register(pool: &PgPool, repo: &Repository, stock: i64) -> Uuid {
    let product_id = Uuid::now_v7();
    run(
        pool,
        repo,
        product_id,
        ProductCommand::Register {
            name: "Mug".into(),
            price_cents: 1_250,
            initial_stock: stock,
        },
    )
    .await;
    product_id
}

/// Runs `command` on `product_id` in its own committed transaction.
async fn run(pool: &PgPool, repo: &Repository, product_id: Uuid, command: ProductCommand) {
    let mut tx = pool.begin().await.unwrap();
    repo.execute::<Product>(&mut tx, product_id, command, &meta())
        .await
        .expect("infrastructure")
        .expect("accepted")
        .expect("something appended");
    tx.commit().await.unwrap();
}

async fn load(pool: &PgPool, repo: &Repository, product_id: Uuid) -> (ProductState, i64) {
    let mut conn = pool.acquire().await.unwrap();
    let loaded = repo.load::<Product>(&mut conn, product_id).await.unwrap();
    (loaded.state, loaded.version)
}

/// The state folded from the whole stream, with no cache and no snapshot.
async fn fold_from_log(pool: &PgPool, product_id: Uuid) -> (ProductState, i64) {
    let mut conn = pool.acquire().await.unwrap();
    let events = eventstore::read_stream(&mut conn, product_id, 0)
        .await
        .unwrap();
    let state = events.iter().fold(ProductState::default(), |state, e| {
        Product::evolve(state, &e.decode::<ProductEvent>().unwrap())
    });
    (state, events.last().map_or(0, |e| e.stream_version))
}

fn available(state: &ProductState) -> i64 {
    state.product().expect("registered").available
}

#[tokio::test]
async fn a_cached_state_sees_what_other_writers_appended() {
    let db = TestDatabase::create().await;
    let (ours, theirs) = (repository(0), repository(0));
    let product = register(&db.pool, &ours, 10).await;
    assert_eq!(load(&db.pool, &ours, product).await.1, 1);
    assert_eq!(ours.cached_streams(), 1);

    run(
        &db.pool,
        &theirs,
        product,
        ProductCommand::Restock { quantity: 5 },
    )
    .await;
    run(
        &db.pool,
        &theirs,
        product,
        ProductCommand::Restock { quantity: 7 },
    )
    .await;

    let (state, version) = load(&db.pool, &ours, product).await;
    assert_eq!((available(&state), version), (22, 3));
    assert_eq!((state, version), fold_from_log(&db.pool, product).await);
}

#[tokio::test]
async fn a_cached_state_from_a_rolled_back_append_is_never_trusted() {
    let db = TestDatabase::create().await;
    let (ours, theirs) = (repository(0), repository(0));
    let product = register(&db.pool, &ours, 10).await;

    // Our append is cached, then rolled back; another writer takes version 2.
    let mut tx = db.pool.begin().await.unwrap();
    ours.execute::<Product>(
        &mut tx,
        product,
        ProductCommand::Restock { quantity: 100 },
        &meta(),
    )
    .await
    .unwrap()
    .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(load(&db.pool, &theirs, product).await.1, 1);
    run(
        &db.pool,
        &theirs,
        product,
        ProductCommand::Restock { quantity: 1 },
    )
    .await;

    let (state, version) = load(&db.pool, &ours, product).await;
    assert_eq!((available(&state), version), (11, 2));

    // And when nobody wrote there at all.
    let other = register(&db.pool, &ours, 3).await;
    let mut tx = db.pool.begin().await.unwrap();
    ours.execute::<Product>(
        &mut tx,
        other,
        ProductCommand::Restock { quantity: 100 },
        &meta(),
    )
    .await
    .unwrap()
    .unwrap();
    tx.rollback().await.unwrap();
    let (state, version) = load(&db.pool, &ours, other).await;
    assert_eq!((available(&state), version), (3, 1));
}

#[tokio::test]
async fn snapshots_are_written_every_n_events_and_used_for_cold_loads() {
    let db = TestDatabase::create().await;
    let writer = repository(10);
    let product = register(&db.pool, &writer, 0).await;
    for _ in 0..24 {
        run(
            &db.pool,
            &writer,
            product,
            ProductCommand::Restock { quantity: 1 },
        )
        .await;
    }
    let (version, state): (i64, serde_json::Value) =
        sqlx::query_as("SELECT version, state FROM eventstore.snapshots WHERE stream_id = $1")
            .bind(product)
            .fetch_one(&db.pool)
            .await
            .expect("a snapshot was written");
    assert_eq!(version, 20, "written every 10 events");

    // A cold repository starts from the snapshot: doctor the snapshot's
    // state and the load shows it (plus the 5 events after it).
    let mut doctored = state.clone();
    doctored["Registered"]["price_cents"] = serde_json::json!(999);
    sqlx::query("UPDATE eventstore.snapshots SET state = $2 WHERE stream_id = $1")
        .bind(product)
        .bind(&doctored)
        .execute(&db.pool)
        .await
        .unwrap();
    let (cold, version) = load(&db.pool, &repository(10), product).await;
    assert_eq!(version, 25);
    assert_eq!(cold.price_cents(), Some(999), "the snapshot was used");
    assert_eq!(available(&cold), 24);
}

#[tokio::test]
async fn a_snapshot_of_another_state_version_or_undecodable_is_ignored() {
    let db = TestDatabase::create().await;
    let writer = repository(5);
    let product = register(&db.pool, &writer, 0).await;
    for _ in 0..7 {
        run(
            &db.pool,
            &writer,
            product,
            ProductCommand::Restock { quantity: 2 },
        )
        .await;
    }
    let expected = fold_from_log(&db.pool, product).await;

    // An older schema of the state, claiming something else.
    sqlx::query(
        "UPDATE eventstore.snapshots
         SET state_version = $2, state = '{\"Registered\": {\"price_cents\": 1}}'
         WHERE stream_id = $1",
    )
    .bind(product)
    .bind(<Product as Aggregate>::STATE_VERSION - 1)
    .execute(&db.pool)
    .await
    .unwrap();
    assert_eq!(load(&db.pool, &repository(5), product).await, expected);

    // The current version number, but a state that does not decode.
    sqlx::query(
        "UPDATE eventstore.snapshots SET state_version = $2, state = '[1, 2]' WHERE stream_id = $1",
    )
    .bind(product)
    .bind(<Product as Aggregate>::STATE_VERSION)
    .execute(&db.pool)
    .await
    .unwrap();
    assert_eq!(load(&db.pool, &repository(5), product).await, expected);
}

#[tokio::test]
async fn a_long_stream_loads_the_same_cold_cached_and_from_a_snapshot() {
    let db = TestDatabase::create().await;
    let writer = repository(100);
    let product = register(&db.pool, &writer, 1_000_000).await;
    // Reservations and their closing, through the repository (snapshots on).
    for n in 0..150 {
        let order_id = Uuid::now_v7();
        run(
            &db.pool,
            &writer,
            product,
            ProductCommand::Reserve {
                order_id,
                quantity: 2,
            },
        )
        .await;
        let close = if n % 3 == 0 {
            ProductCommand::Release { order_id }
        } else {
            ProductCommand::Commit { order_id }
        };
        run(&db.pool, &writer, product, close).await;
    }
    let expected = fold_from_log(&db.pool, product).await;
    assert_eq!(expected.1, 301);
    assert_eq!(load(&db.pool, &writer, product).await, expected, "cached");
    assert_eq!(
        load(&db.pool, &repository(100), product).await,
        expected,
        "snapshot"
    );
    sqlx::query("DELETE FROM eventstore.snapshots")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        load(&db.pool, &repository(100), product).await,
        expected,
        "from the log"
    );
}

#[tokio::test]
async fn prefetch_loads_streams_of_several_types_and_names_a_foreign_one() {
    let db = TestDatabase::create().await;
    let repo = repository(0);
    let product = register(&db.pool, &repo, 4).await;
    let missing = Uuid::now_v7();
    let mut conn = db.pool.acquire().await.unwrap();
    let prefetched = repo
        .prefetch(
            &mut conn,
            &[
                LoadRequest::of::<Product>(product),
                LoadRequest::of::<Order>(missing),
                LoadRequest::of::<Order>(product),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        available(&prefetched.load::<Product>(product).unwrap().state),
        4
    );
    assert!(prefetched.load::<Order>(missing).unwrap().is_new());
    // `product` was asked for twice; the first request wins, and folding it
    // as an order names its real type.
    assert!(matches!(
        prefetched.load::<Order>(product),
        Err(CommandError::WrongStreamType { actual, .. }) if actual == "inventory"
    ));
    let foreign = repo.load::<Order>(&mut conn, product).await;
    assert!(matches!(foreign, Err(CommandError::WrongStreamType { .. })));
}

fn restocked(quantity: i64) -> (NewEvent, Metadata) {
    (
        NewEvent::from_domain(&ProductEvent::ProductRestocked { quantity }),
        meta(),
    )
}

#[tokio::test]
async fn in_a_batch_append_a_conflicting_stream_fails_alone() {
    let db = TestDatabase::create().await;
    let repo = repository(0);
    let (a, b) = (
        register(&db.pool, &repo, 1).await,
        register(&db.pool, &repo, 1).await,
    );
    let new = Uuid::now_v7();
    let registered = NewEvent::from_domain(&ProductEvent::ProductRegistered {
        name: "New".into(),
        price_cents: 1,
        initial_stock: 0,
    });

    let mut tx = db.pool.begin().await.unwrap();
    let outcomes = append_batch(
        &mut tx,
        &[
            StreamAppend {
                stream_type: "inventory",
                stream_id: a,
                expected_version: 1,
                events: vec![restocked(1), restocked(2)],
            },
            StreamAppend {
                stream_type: "inventory",
                stream_id: b,
                expected_version: 7, // stale
                events: vec![restocked(3)],
            },
            StreamAppend {
                stream_type: "inventory",
                stream_id: new,
                expected_version: 0,
                events: vec![(registered.clone(), meta())],
            },
        ],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let StreamOutcome::Appended(first) = &outcomes[0] else {
        panic!("a appended: {outcomes:?}");
    };
    assert_eq!(first.stream_version, 3);
    assert_eq!(
        first
            .events
            .iter()
            .map(|e| e.stream_version)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!(outcomes[1], StreamOutcome::Conflict { actual: 1 });
    assert!(matches!(&outcomes[2], StreamOutcome::Appended(x) if x.stream_version == 1));

    assert_eq!(fold_from_log(&db.pool, a).await.1, 3);
    assert_eq!(
        fold_from_log(&db.pool, b).await.1,
        1,
        "nothing written for b"
    );
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    // 2 registrations + a's 2 + new's 1
    assert_eq!(outbox, 5);

    // A stream of another type never gets events of this one.
    let mut tx = db.pool.begin().await.unwrap();
    let wrong = append_batch(
        &mut tx,
        &[StreamAppend {
            stream_type: "orders",
            stream_id: a,
            expected_version: 3,
            events: vec![restocked(1)],
        }],
    )
    .await
    .unwrap();
    assert_eq!(wrong, [StreamOutcome::Conflict { actual: 3 }]);
    // And the single-stream append still works beside it.
    append(
        &mut tx,
        "inventory",
        a,
        eventstore::ExpectedVersion::Exact(3),
        &[restocked(1).0],
        &meta(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(fold_from_log(&db.pool, a).await.1, 4);
}

/// Waits until a session of the test's database waits for a lock.
async fn wait_for_a_lock_wait(pool: &PgPool) {
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no session waited for a lock within 5 s");
}

/// Starts `command` on `product_id` in a transaction that waits (for a lock)
/// and commits once it has run; returns what it decided.
fn spawn_run(
    pool: &PgPool,
    repo: &Repository,
    product_id: Uuid,
    quantity: i64,
) -> tokio::task::JoinHandle<Result<(), String>> {
    let (pool, repo) = (pool.clone(), repo.clone());
    tokio::spawn(async move {
        let mut tx = pool.begin().await.unwrap();
        let command = ProductCommand::Restock { quantity };
        let outcome = repo
            .execute::<Product>(&mut tx, product_id, command, &meta())
            .await;
        match outcome {
            Ok(Ok(Some(_))) => {
                tx.commit().await.unwrap();
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
}

#[tokio::test]
async fn a_stream_that_lost_a_race_is_then_written_under_its_lock() {
    let db = TestDatabase::create().await;
    let repo = repository(0);
    let product = register(&db.pool, &repo, 0).await;

    // A race lost: another transaction appended first and committed.
    let mut ours = db.pool.begin().await.unwrap();
    repo.execute::<Product>(
        &mut ours,
        product,
        ProductCommand::Restock { quantity: 1 },
        &meta(),
    )
    .await
    .unwrap()
    .unwrap();
    let mut theirs = db.pool.begin().await.unwrap();
    let contender = repo.clone();
    let waiting = tokio::spawn(async move {
        let outcome = contender
            .execute::<Product>(
                &mut theirs,
                product,
                ProductCommand::Restock { quantity: 1 },
                &meta(),
            )
            .await;
        (
            outcome.map(|r| r.is_ok()).map_err(|e| e.to_string()),
            theirs,
        )
    });
    wait_for_a_lock_wait(&db.pool).await;
    ours.commit().await.unwrap();
    let (outcome, theirs) = waiting.await.unwrap();
    assert!(
        outcome.unwrap_err().contains("expected"),
        "this race is lost: now contended"
    );
    theirs.rollback().await.unwrap();

    // Now contended: a second writer queues on the row lock before reading,
    // so it sees the first one's event and does not lose.
    let mut holder = db.pool.begin().await.unwrap();
    repo.execute::<Product>(
        &mut holder,
        product,
        ProductCommand::Restock { quantity: 5 },
        &meta(),
    )
    .await
    .unwrap()
    .unwrap();
    let second = spawn_run(&db.pool, &repo, product, 7);
    wait_for_a_lock_wait(&db.pool).await;
    holder.commit().await.unwrap();
    second
        .await
        .unwrap()
        .expect("queued behind the lock, not conflicting");
    let (state, version) = fold_from_log(&db.pool, product).await;
    assert_eq!((available(&state), version), (1 + 5 + 7, 4));
}
