//! The command API starts only on a fully migrated schema: it connects as
//! the application role, which may not migrate, so it checks and refuses
//! with an error that names the `migrate` command.

use std::time::Duration;

use clap::Parser as _;
use testkit::TestDatabase;
use tokio_util::sync::CancellationToken;

fn config(url: &str) -> command_api::Config {
    command_api::Config::try_parse_from([
        "command-api",
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        url,
    ])
    .unwrap()
}

async fn refusal(url: &str) -> String {
    let run = command_api::run(config(url), CancellationToken::new());
    let error = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the command API started serving on an unmigrated schema")
        .expect_err("the command API started on an unmigrated schema");
    format!("{error:#}")
}

#[tokio::test]
async fn refuses_to_start_on_an_unmigrated_database() {
    let db = TestDatabase::create_unmigrated().await;
    let message = refusal(&db.url).await;
    assert!(message.contains("not migrated"), "{message}");
    assert!(message.contains("make migrate"), "{message}");
}

#[tokio::test]
async fn refuses_to_start_when_a_migration_is_missing() {
    let db = TestDatabase::create().await;
    let latest = platform::db::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(latest)
        .execute(&db.owner_pool().await)
        .await
        .unwrap();
    let message = refusal(&db.url).await;
    assert!(
        message.contains(&format!("missing {latest} (")),
        "{message}"
    );
    assert!(message.contains("migrate"), "{message}");
}

#[tokio::test]
async fn starts_on_a_migrated_database() {
    let db = TestDatabase::create().await;
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(command_api::run(config(&db.url), shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !run.is_finished(),
        "the command API exited: {:?}",
        run.await
    );
    shutdown.cancel();
    run.await.unwrap().expect("clean shutdown");
}
