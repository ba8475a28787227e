//! Helpers shared by the event store's integration tests.
#![allow(dead_code)]

use eventstore::{append, AppendError, Appended, ExpectedVersion, Metadata, NewEvent};
use sqlx::PgPool;
use uuid::Uuid;

/// A test event whose payload carries `n`.
pub fn event(n: i64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "TestHappened".to_owned(),
        schema_version: 1,
        payload: serde_json::json!({ "n": n }),
    }
}

/// Appends `events` to `stream_id` in its own transaction.
pub async fn append_committed(
    pool: &PgPool,
    stream_type: &str,
    stream_id: Uuid,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<Appended, AppendError> {
    let mut tx = pool.begin().await.expect("begin");
    let appended = append(
        &mut tx,
        stream_type,
        stream_id,
        expected,
        events,
        &Metadata::for_command(Uuid::now_v7()),
    )
    .await?;
    tx.commit().await.expect("commit");
    Ok(appended)
}

/// Number of rows in `table`.
pub async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .expect("count")
}
