//! Guarantees 1–3: atomic appends with their outbox rows, dense per-stream
//! versions under concurrency, and a log the database keeps append-only.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{append_committed, count, event};
use eventstore::{append, read_all_after, read_stream, AppendError, ExpectedVersion, Metadata};
use testkit::TestDatabase;
use uuid::Uuid;

#[tokio::test]
async fn append_records_envelopes_and_outbox_rows_together() {
    let db = TestDatabase::create().await;
    let stream = Uuid::now_v7();
    let events = [event(1), event(2), event(3)];
    let appended = append_committed(
        &db.pool,
        "orders",
        stream,
        ExpectedVersion::Exact(0),
        &events,
    )
    .await
    .expect("append");

    assert_eq!(appended.stream_version, 3);
    let versions: Vec<i64> = appended.events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(appended.last_position, appended.events[2].global_position);
    for (recorded, sent) in appended.events.iter().zip(&events) {
        assert_eq!(recorded.event_id, sent.event_id);
        assert_eq!(recorded.payload, sent.payload);
        assert_eq!(recorded.stream_type, "orders");
        assert_eq!(
            recorded.event_id.get_version_num(),
            7,
            "event ids are UUIDv7"
        );
    }
    let outbox: Vec<i64> =
        sqlx::query_scalar("SELECT global_position FROM eventstore.outbox ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let positions: Vec<i64> = appended.events.iter().map(|e| e.global_position).collect();
    assert_eq!(outbox, positions);
}

#[tokio::test]
async fn a_rolled_back_or_failed_append_leaves_no_event_and_no_outbox_row() {
    let db = TestDatabase::create().await;
    let stream = Uuid::now_v7();

    // Rolled back by the caller (e.g. the idempotency record failed).
    let mut tx = db.pool.begin().await.unwrap();
    append(
        &mut tx,
        "orders",
        stream,
        ExpectedVersion::Exact(0),
        &[event(1)],
        &meta(),
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();

    // Failing half-way: the second event reuses an event id already in the log.
    let existing = append_committed(
        &db.pool,
        "orders",
        Uuid::now_v7(),
        ExpectedVersion::Any,
        &[event(0)],
    )
    .await
    .unwrap();
    let mut duplicate = event(2);
    duplicate.event_id = existing.events[0].event_id;
    let mut tx = db.pool.begin().await.unwrap();
    let failed = append(
        &mut tx,
        "orders",
        stream,
        ExpectedVersion::Exact(0),
        &[event(1), duplicate],
        &meta(),
    )
    .await;
    assert!(
        matches!(failed, Err(AppendError::Database { .. })),
        "{failed:?}"
    );
    drop(tx);

    assert_eq!(count(&db.pool, "eventstore.events").await, 1);
    assert_eq!(count(&db.pool, "eventstore.outbox").await, 1);
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(
        eventstore::stream_version(&mut conn, stream).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_stale_expected_version_is_a_conflict_and_writes_nothing() {
    let db = TestDatabase::create().await;
    let stream = Uuid::now_v7();
    append_committed(
        &db.pool,
        "inventory",
        stream,
        ExpectedVersion::Exact(0),
        &[event(1), event(2)],
    )
    .await
    .unwrap();

    for stale in [0, 1, 3] {
        let result = append_committed(
            &db.pool,
            "inventory",
            stream,
            ExpectedVersion::Exact(stale),
            &[event(9)],
        )
        .await;
        match result {
            Err(AppendError::Conflict { actual, .. }) => assert_eq!(actual, 2),
            other => panic!("expected a conflict for expected version {stale}, got {other:?}"),
        }
    }
    assert_eq!(count(&db.pool, "eventstore.events").await, 2);
    let ok = append_committed(
        &db.pool,
        "inventory",
        stream,
        ExpectedVersion::Exact(2),
        &[event(3)],
    )
    .await
    .unwrap();
    assert_eq!(ok.stream_version, 3);
}

#[tokio::test]
async fn concurrent_writers_with_the_same_expected_version_commit_exactly_once() {
    let db = TestDatabase::create().await;
    let stream = Uuid::now_v7();
    append_committed(
        &db.pool,
        "orders",
        stream,
        ExpectedVersion::Exact(0),
        &[event(0)],
    )
    .await
    .unwrap();

    let pool = Arc::new(db.pool.clone());
    let writers: Vec<_> = (0..16)
        .map(|n| {
            let pool = pool.clone();
            tokio::spawn(async move {
                append_committed(
                    &pool,
                    "orders",
                    stream,
                    ExpectedVersion::Exact(1),
                    &[event(n)],
                )
                .await
            })
        })
        .collect();
    let mut won = 0;
    for writer in writers {
        match writer.await.unwrap() {
            Ok(appended) => {
                won += 1;
                assert_eq!(appended.stream_version, 2);
            }
            Err(AppendError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(won, 1, "exactly one writer may win version 2");
    assert_eq!(count(&db.pool, "eventstore.events").await, 2);
}

#[tokio::test]
async fn versions_stay_dense_when_many_writers_retry_on_conflict() {
    let db = TestDatabase::create().await;
    let stream = Uuid::now_v7();
    let writers: Vec<_> = (0..12)
        .map(|n| {
            let pool = db.pool.clone();
            tokio::spawn(async move {
                loop {
                    let mut conn = pool.acquire().await.unwrap();
                    let current = eventstore::stream_version(&mut conn, stream)
                        .await
                        .unwrap()
                        .unwrap_or(0);
                    drop(conn);
                    match append_committed(
                        &pool,
                        "orders",
                        stream,
                        ExpectedVersion::Exact(current),
                        &[event(n), event(n)],
                    )
                    .await
                    {
                        Ok(_) => return,
                        Err(AppendError::Conflict { .. }) => tokio::task::yield_now().await,
                        Err(other) => panic!("unexpected error {other}"),
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut conn = db.pool.acquire().await.unwrap();
    let events = read_stream(&mut conn, stream, 0).await.unwrap();
    let versions: Vec<i64> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=24).collect::<Vec<_>>());
    // The two events of each command are adjacent: appends never interleave.
    for pair in events.chunks(2) {
        assert_eq!(pair[0].payload, pair[1].payload);
    }
    let positions: BTreeSet<i64> = events.iter().map(|e| e.global_position).collect();
    assert_eq!(positions.len(), 24);
    let ordered: Vec<i64> = events.iter().map(|e| e.global_position).collect();
    assert!(
        ordered.windows(2).all(|w| w[0] < w[1]),
        "stream order follows log order"
    );
}

#[tokio::test]
async fn the_database_refuses_update_delete_and_truncate_of_the_log() {
    let db = TestDatabase::create().await;
    append_committed(
        &db.pool,
        "orders",
        Uuid::now_v7(),
        ExpectedVersion::Any,
        &[event(1)],
    )
    .await
    .unwrap();
    // The app role lacks the privileges; the owner, who has them, meets the
    // append-only triggers (migrate/tests/roles.rs tries the rest).
    let owner = db.owner_pool().await;
    for statement in [
        "UPDATE eventstore.events SET payload = '{}'",
        "DELETE FROM eventstore.events",
        "TRUNCATE eventstore.events CASCADE",
    ] {
        let error = sqlx::query(statement)
            .execute(&db.pool)
            .await
            .expect_err(statement);
        assert!(
            error.to_string().contains("permission denied"),
            "{statement}: {error}"
        );
        let error = sqlx::query(statement)
            .execute(&owner)
            .await
            .expect_err(statement);
        assert!(
            error.to_string().contains("append-only"),
            "{statement} as the owner: {error}"
        );
    }
    assert_eq!(count(&db.pool, "eventstore.events").await, 1);
}

#[tokio::test]
async fn read_all_returns_the_log_in_order_in_batches_and_by_stream_type() {
    let db = TestDatabase::create().await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    append_committed(
        &db.pool,
        "orders",
        a,
        ExpectedVersion::Any,
        &[event(1), event(2)],
    )
    .await
    .unwrap();
    append_committed(&db.pool, "inventory", b, ExpectedVersion::Any, &[event(3)])
        .await
        .unwrap();
    append_committed(&db.pool, "orders", a, ExpectedVersion::Any, &[event(4)])
        .await
        .unwrap();

    let mut conn = db.pool.acquire().await.unwrap();
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let batch = read_all_after(&mut conn, after, 2, None).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.global_position;
        seen.extend(batch.into_iter().map(|e| e.payload["n"].as_i64().unwrap()));
    }
    assert_eq!(seen, [1, 2, 3, 4]);

    let orders_only = read_all_after(&mut conn, 0, 100, Some(&["orders".to_owned()]))
        .await
        .unwrap();
    assert_eq!(orders_only.len(), 3);
    let stream_a = read_stream(&mut conn, a, 1).await.unwrap();
    assert_eq!(
        stream_a
            .iter()
            .map(|e| e.stream_version)
            .collect::<Vec<_>>(),
        [2, 3]
    );
}

#[tokio::test]
async fn a_stream_keeps_its_type() {
    let db = TestDatabase::create().await;
    let stream = Uuid::now_v7();
    append_committed(
        &db.pool,
        "orders",
        stream,
        ExpectedVersion::Any,
        &[event(1)],
    )
    .await
    .unwrap();
    let result = append_committed(
        &db.pool,
        "inventory",
        stream,
        ExpectedVersion::Any,
        &[event(2)],
    )
    .await;
    assert!(
        matches!(result, Err(AppendError::WrongStreamType { .. })),
        "{result:?}"
    );
    assert_eq!(count(&db.pool, "eventstore.events").await, 1);
}

fn meta() -> Metadata {
    Metadata::for_command(Uuid::now_v7())
}
