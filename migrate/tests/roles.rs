//! Issue 9 part 5 and guarantees 3 and 7: what each role may do, tried on a
//! database laid out like production (owned and migrated by `orders_owner`).
//! Every forbidden thing is tried and must be refused by PostgreSQL.

use sqlx::PgPool;
use testkit::TestDatabase;

/// SQLSTATE of "permission denied" (also what the log's triggers raise).
const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// What `statement` failed with: its SQLSTATE and message, or `None` if it ran.
async fn refusal(pool: &PgPool, statement: &str) -> Option<(String, String)> {
    let error = sqlx::query(statement).execute(pool).await.err()?;
    let code = error
        .as_database_error()
        .and_then(|db| db.code().map(|code| code.into_owned()))
        .unwrap_or_else(|| panic!("`{statement}` failed outside the database: {error}"));
    Some((code, error.to_string()))
}

/// Tries every statement and fails, naming each, unless all of them were
/// refused for lack of privilege.
async fn assert_all_refused(pool: &PgPool, statements: &[&str]) {
    let mut allowed = Vec::new();
    for statement in statements {
        match refusal(pool, statement).await {
            Some((code, _)) if code == INSUFFICIENT_PRIVILEGE => {}
            Some((code, message)) => {
                allowed.push(format!("`{statement}` failed with {code}: {message}"))
            }
            None => allowed.push(format!("`{statement}` was allowed")),
        }
    }
    assert!(
        allowed.is_empty(),
        "{} not refused for lack of privilege:\n{}",
        current_user(pool).await,
        allowed.join("\n")
    );
}

async fn assert_refused(pool: &PgPool, statement: &str) {
    assert_all_refused(pool, &[statement]).await;
}

async fn current_user(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("counting {table}: {e}"))
}

/// Appends one event (and its stream row) the way the event store does.
async fn append_one(pool: &PgPool) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO eventstore.streams (stream_id, stream_type, version)
         VALUES ('00000000-0000-0000-0000-000000000001', 'orders', 1)",
    )
    .execute(&mut *tx)
    .await
    .expect("the app role creates a stream");
    let position: i64 = sqlx::query_scalar(
        "INSERT INTO eventstore.events
             (event_id, stream_id, stream_type, stream_version, event_type, schema_version, payload, metadata)
         VALUES (gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 'orders', 1,
                 'OrderPlaced', 1, '{}', '{}')
         RETURNING global_position",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("the app role appends to the log");
    sqlx::query("INSERT INTO eventstore.outbox (global_position) VALUES ($1)")
        .bind(position)
        .execute(&mut *tx)
        .await
        .expect("the app role enqueues the event");
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn the_app_role_reads_and_appends_to_the_log_but_cannot_change_it() {
    let db = TestDatabase::create().await;
    assert_eq!(current_user(&db.pool).await, "orders");
    append_one(&db.pool).await;
    assert_eq!(count(&db.pool, "eventstore.events").await, 1);

    assert_all_refused(
        &db.pool,
        &[
            "UPDATE eventstore.events SET payload = '{}'",
            "DELETE FROM eventstore.events",
            "TRUNCATE eventstore.events",
            "TRUNCATE eventstore.events CASCADE",
            "ALTER TABLE eventstore.events DISABLE TRIGGER events_no_update_delete",
            "ALTER TABLE eventstore.events DISABLE TRIGGER ALL",
            "DROP TRIGGER events_no_update_delete ON eventstore.events",
            "DROP TRIGGER events_no_truncate ON eventstore.events",
            "DROP TABLE eventstore.events",
            "DROP TABLE eventstore.events CASCADE",
            "CREATE TRIGGER sneaky BEFORE INSERT ON eventstore.events
             FOR EACH ROW EXECUTE FUNCTION eventstore.refuse_log_mutation()",
            "ALTER TABLE eventstore.events ADD COLUMN sneaky INT",
            "ALTER TABLE eventstore.events OWNER TO orders",
            "ALTER FUNCTION eventstore.refuse_log_mutation() RENAME TO gone",
            "DROP FUNCTION eventstore.refuse_log_mutation() CASCADE",
            "CREATE TABLE eventstore.sneaky (id INT)",
            "DROP SCHEMA eventstore CASCADE",
            // session_replication_role = replica would skip the triggers.
            "SET session_replication_role = replica",
            // The other log tables: versions only move forward, nothing is deleted
            // but what the relay delivered.
            "DELETE FROM eventstore.streams",
            "TRUNCATE eventstore.outbox",
            "ALTER TABLE eventstore.outbox DROP CONSTRAINT outbox_global_position_fkey",
            // No way around it through role powers.
            "SET ROLE orders_owner",
            "ALTER ROLE orders SUPERUSER",
            "ALTER ROLE orders CREATEDB",
            "CREATE ROLE sneaky",
            "CREATE DATABASE sneaky",
        ],
    )
    .await;
    // Granting itself what it lacks changes nothing (a warning, no privilege).
    sqlx::query("GRANT UPDATE, DELETE, TRUNCATE ON eventstore.events TO orders")
        .execute(&db.pool)
        .await
        .expect("a grant without the right is a no-op with a warning");
    assert_refused(&db.pool, "DELETE FROM eventstore.events").await;

    assert_eq!(count(&db.pool, "eventstore.events").await, 1);
    let triggers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger
         WHERE tgrelid = 'eventstore.events'::regclass AND NOT tgisinternal AND tgenabled = 'O'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(triggers, 2, "both append-only triggers are still enabled");
}

#[tokio::test]
async fn even_the_owner_cannot_update_delete_or_truncate_the_log() {
    let db = TestDatabase::create().await;
    append_one(&db.pool).await;
    let owner = db.owner_pool().await;
    assert_eq!(current_user(&owner).await, "orders_owner");
    for statement in [
        "UPDATE eventstore.events SET payload = '{}'",
        "DELETE FROM eventstore.events",
        "TRUNCATE eventstore.events CASCADE",
    ] {
        let (code, message) = refusal(&owner, statement)
            .await
            .unwrap_or_else(|| panic!("the owner ran `{statement}`"));
        assert_eq!(code, INSUFFICIENT_PRIVILEGE, "{statement}: {message}");
        assert!(message.contains("append-only"), "{statement}: {message}");
    }
    assert_eq!(count(&owner, "eventstore.events").await, 1);
}

#[tokio::test]
async fn the_app_role_keeps_what_the_processes_need() {
    let db = TestDatabase::create().await;
    append_one(&db.pool).await;
    for statement in [
        "UPDATE eventstore.streams SET version = version + 1",
        "DELETE FROM eventstore.outbox",
        "INSERT INTO command.idempotency_keys (idempotency_key, request_hash, response_status, response_body)
         VALUES ('k', 'h', 201, '{}')",
        "DELETE FROM command.idempotency_keys",
        "INSERT INTO saga.processed_events (event_id) VALUES (gen_random_uuid())",
        "DELETE FROM saga.processed_events",
        "SELECT count(*) FROM projector.dead_letters",
        "SELECT count(*) FROM gateway.charges",
        "SELECT count(*) FROM _sqlx_migrations",
        // Read models are the app role's own: replay drops and swaps them.
        "INSERT INTO read.user_orders (order_id, user_id, placed_at, version)
         VALUES (gen_random_uuid(), 'u', now(), 1)",
        "TRUNCATE read.user_orders",
        "CREATE SCHEMA read_shadow_probe",
        "CREATE TABLE read_shadow_probe.products (LIKE read.products INCLUDING ALL)",
        "DROP SCHEMA read_shadow_probe CASCADE",
        "CREATE TABLE read.probe (id INT)",
    ] {
        sqlx::query(statement)
            .execute(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("the app role may `{statement}`: {e}"));
    }
    // What the app role creates in `read` the query role can read.
    let query = db.query_pool().await;
    assert_eq!(count(&query, "read.probe").await, 0);
}

#[tokio::test]
async fn the_query_role_only_selects_the_read_models() {
    let db = TestDatabase::create().await;
    append_one(&db.pool).await;
    let query = db.query_pool().await;
    assert_eq!(current_user(&query).await, "orders_query");
    for table in [
        "read.products",
        "read.orders",
        "read.user_orders",
        "read.payments",
    ] {
        count(&query, table).await;
        assert_refused(&query, &format!("UPDATE {table} SET version = version + 1")).await;
        assert_refused(&query, &format!("DELETE FROM {table}")).await;
        assert_refused(&query, &format!("TRUNCATE {table}")).await;
        assert_refused(&query, &format!("ALTER TABLE {table} ADD COLUMN x INT")).await;
    }
    assert_refused(
        &query,
        "INSERT INTO read.user_orders (order_id, user_id, placed_at, version)
         VALUES (gen_random_uuid(), 'u', now(), 1)",
    )
    .await;
    let selects: Vec<String> = [
        "eventstore.events",
        "eventstore.streams",
        "eventstore.outbox",
        "eventstore.snapshots",
        "command.idempotency_keys",
        "saga.order_sagas",
        "saga.processed_events",
        "saga.dead_letters",
        "projector.dead_letters",
        "gateway.charges",
        "_sqlx_migrations",
    ]
    .iter()
    .map(|table| format!("SELECT count(*) FROM {table}"))
    .collect();
    assert_all_refused(
        &query,
        &selects.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_refused(&query, "CREATE TABLE read.sneaky (id INT)").await;
    assert_refused(&query, "CREATE SCHEMA sneaky").await;
}

#[tokio::test]
async fn migrations_refuse_to_run_as_the_app_role() {
    let db = TestDatabase::create_unmigrated().await;
    let error = platform::db::migrate(&db.pool)
        .await
        .expect_err("the app role migrated the database");
    assert!(
        error.to_string().contains("permission denied"),
        "unexpected error: {error}"
    );
}
