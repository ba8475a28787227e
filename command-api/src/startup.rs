//! Building the router and running the server.

use std::time::Duration;

use anyhow::Context;
use axum::{middleware, Router};
use platform::http::{database_readiness, health_router, with_common_layers};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::config::Config;
use crate::correlation;
use crate::routes;
use crate::state::AppState;

/// The command routes and their OpenAPI document.
fn commands() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(routes::products::router())
        .merge(routes::orders::router())
}

/// The OpenAPI 3.1 document of the command API (served at `/openapi.json`).
pub fn openapi() -> OpenApi {
    document(commands().split_for_parts().1)
}

fn document(api: OpenApi) -> OpenApi {
    platform::openapi::document(
        api,
        "Orders command API",
        "Commands that append events to the log: register and restock products, place and \
         cancel orders. Every error is `application/problem+json`.",
    )
}

/// The whole HTTP API: command routes, health probes, `/openapi.json` and
/// `/docs`, the common layers (metrics, body limit, tracing, panics → 500)
/// and the `X-Correlation-Id` middleware.
pub fn router(state: AppState) -> Router {
    let readiness = database_readiness(state.pool.clone());
    let (commands, api) = commands().with_state(state).split_for_parts();
    let app = commands
        .merge(health_router(readiness))
        .merge(platform::openapi::router(&document(api)));
    with_common_layers(app).layer(middleware::from_fn(correlation::assign_command_id))
}

/// Runs the command API until `shutdown` is cancelled: sets up logging,
/// connects to PostgreSQL (lazily), checks that the schema is fully
/// migrated unless `--skip-schema-check`, binds `config.bind` and serves.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let _telemetry = platform::telemetry::init("command-api", &config.telemetry);
    let pool = platform::db::connect_lazy(&config.db).context("invalid database configuration")?;
    if !config.skip_schema_check {
        platform::db::ensure_migrated(&pool)
            .await
            .context("checking the database schema")?;
    }
    let listener = TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    platform::metrics::spawn_pool_sampler(pool.clone(), "command", shutdown.clone());
    let retention = config.writer_settings().idempotency_retention;
    crate::idempotency::spawn_pruner(
        pool.clone(),
        retention,
        (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(300)),
        shutdown.clone(),
    );
    eventstore::metrics::describe();
    metrics::describe_histogram!(
        "command_batch_size",
        "Commands committed per group-commit batch."
    );
    metrics::describe_counter!(
        "command_retries_exhausted_total",
        "Commands answered 409 after losing the optimistic race every time."
    );
    platform::http::serve(
        listener,
        router(AppState::with_settings(
            pool.clone(),
            config.writer_settings(),
        )),
        shutdown,
    )
    .await
    .context("serving HTTP")?;
    pool.close().await;
    Ok(())
}
