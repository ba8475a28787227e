//! The simulator starts only on a fully migrated schema (it connects as the
//! application role, which may not migrate) and says how to migrate.

use std::time::Duration;

use clap::Parser as _;
use testkit::TestDatabase;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn refuses_to_start_on_an_unmigrated_database() {
    let db = TestDatabase::create_unmigrated().await;
    let config = payment_gateway::Config::try_parse_from([
        "payment-gateway",
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        &db.url,
    ])
    .unwrap();
    let run = payment_gateway::run(config, CancellationToken::new());
    let error = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the gateway started serving on an unmigrated schema")
        .expect_err("the gateway started on an unmigrated schema");
    let message = format!("{error:#}");
    assert!(message.contains("not migrated"), "{message}");
    assert!(message.contains("make migrate"), "{message}");
}
