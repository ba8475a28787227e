//! Guarantee 7: the query side cannot write; it connects with a role that
//! can only SELECT the read models.

use clap::Parser as _;
use reqwest::StatusCode;
use sqlx::PgPool;
use testkit::TestDatabase;
use tokio_util::sync::CancellationToken;

use crate::helpers::{get, http_client, query_pool, seed_product, ProductSeed};

/// SQLSTATE of "permission denied".
const INSUFFICIENT_PRIVILEGE: &str = "42501";

async fn assert_refused(pool: &PgPool, statement: &str) {
    let error = sqlx::query(statement)
        .execute(pool)
        .await
        .expect_err(&format!("the query role ran `{statement}`"));
    let code = error
        .as_database_error()
        .and_then(|db| db.code().map(|code| code.into_owned()));
    assert_eq!(
        code.as_deref(),
        Some(INSUFFICIENT_PRIVILEGE),
        "`{statement}` failed for another reason: {error}"
    );
}

#[tokio::test]
async fn query_role_cannot_change_the_read_models() {
    let db = TestDatabase::create().await;
    let pool = query_pool(&db.query_url, 3000);
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(user, "orders_query");

    for table in [
        "read.products",
        "read.orders",
        "read.user_orders",
        "read.payments",
    ] {
        sqlx::query(&format!("SELECT count(*) FROM {table}"))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("the query role cannot read {table}: {e}"));
        assert_refused(&pool, &format!("UPDATE {table} SET version = version + 1")).await;
        assert_refused(&pool, &format!("DELETE FROM {table}")).await;
        assert_refused(&pool, &format!("TRUNCATE {table}")).await;
    }
    assert_refused(
        &pool,
        "INSERT INTO read.products (product_id, name, price_cents, available, version, updated_at) \
         VALUES (gen_random_uuid(), 'x', 1, 1, 1, now())",
    )
    .await;
    assert_refused(
        &pool,
        "INSERT INTO read.orders (order_id, user_id, status, lines, total_cents, version, \
         placed_at, updated_at) VALUES (gen_random_uuid(), 'u', 'PENDING', '[]', 0, 1, now(), now())",
    )
    .await;
    assert_refused(
        &pool,
        "INSERT INTO read.user_orders (order_id, user_id, placed_at, version) \
         VALUES (gen_random_uuid(), 'u', now(), 1)",
    )
    .await;
    assert_refused(
        &pool,
        "INSERT INTO read.payments (payment_id, order_id, status, amount_cents, currency, \
         version, updated_at) VALUES (gen_random_uuid(), gen_random_uuid(), 'CAPTURED', 1, \
         'EUR', 1, now())",
    )
    .await;
    assert_refused(&pool, "CREATE TABLE read.sneaky (id INT)").await;
}

#[tokio::test]
async fn query_role_cannot_read_the_event_log_or_command_bookkeeping() {
    let db = TestDatabase::create().await;
    let pool = query_pool(&db.query_url, 3000);

    for table in [
        "eventstore.events",
        "eventstore.streams",
        "eventstore.outbox",
        "command.idempotency_keys",
    ] {
        assert_refused(&pool, &format!("SELECT * FROM {table}")).await;
    }
    assert_refused(
        &pool,
        "INSERT INTO eventstore.events (event_id, stream_id, stream_type, stream_version, \
         event_type, schema_version, payload, metadata) VALUES (gen_random_uuid(), \
         gen_random_uuid(), 'order', 1, 'X', 1, '{}', '{}')",
    )
    .await;
}

#[tokio::test]
async fn running_app_connects_only_as_the_query_role() {
    let db = TestDatabase::create().await;
    let config =
        query_api::Config::try_parse_from(["query-api", "--database-url", db.query_url.as_str()])
            .expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(query_api::run_on(listener, config, shutdown.clone()));
    let product = ProductSeed::named("saucer");
    seed_product(&db.pool, &product).await;

    let http = http_client();
    let reply = get(&http, address, &format!("/products/{}", product.product_id)).await;
    assert_eq!(reply.status, StatusCode::OK);

    let roles: Vec<String> = sqlx::query_scalar(
        "SELECT usename::text FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
    )
    .bind(&db.name)
    .bind(query_api::APPLICATION_NAME)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(!roles.is_empty(), "the app holds no session");
    assert!(roles.iter().all(|role| role == "orders_query"), "{roles:?}");

    shutdown.cancel();
    server.await.unwrap().expect("clean shutdown");
}
