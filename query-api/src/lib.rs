//! The query API: HTTP over the read models only, connected with a role that
//! can only SELECT them (guarantee 7).
//!
//! `GET /products`, `GET /products/{id}`, `GET /orders/{id}` and
//! `GET /users/{user_id}/orders`, plus the health probes. Single-entity reads
//! accept `?min_version=N` (see [`consistency`]). Orders carry their payment
//! (`read.payments`, `null` until one is requested; see [`model::Payment`]).

pub mod config;
pub mod consistency;
pub mod docs;
pub mod error;
pub mod extract;
pub mod model;
pub mod pagination;
pub mod routes;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use config::{Config, Settings};
pub use consistency::{STALE_HEADER, VERSION_HEADER};
pub use error::ApiError;

/// The `application_name` of the API's database sessions.
pub const APPLICATION_NAME: &str = "query-api";

/// What every handler shares: the read-only pool and the settings.
#[derive(Debug, Clone)]
pub struct AppState {
    pool: PgPool,
    settings: Arc<Settings>,
}

impl AppState {
    /// State over `pool` (which should be connected as the query role).
    pub fn new(pool: PgPool, settings: Settings) -> Self {
        Self {
            pool,
            settings: Arc::new(settings),
        }
    }

    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The request-handling settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

fn resources() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(routes::products::router())
        .merge(routes::orders::router())
}

/// The OpenAPI 3.1 document of the query API (served at `/openapi.json`).
pub fn openapi() -> OpenApi {
    document(resources().split_for_parts().1)
}

fn document(api: OpenApi) -> OpenApi {
    platform::openapi::document(
        api,
        "Orders query API",
        "Read models built from the event log: products with stock levels, orders with their \
         payment, a user's orders. `?min_version=` waits briefly for a version a command \
         answered. Every error is `application/problem+json`.",
    )
}

/// The whole HTTP API: resources, health probes, `/openapi.json` and
/// `/docs`, and the common layers.
pub fn router(state: AppState) -> Router {
    let health =
        platform::http::health_router(platform::http::database_readiness(state.pool.clone()));
    let (resources, api) = resources().with_state(state).split_for_parts();
    let app = resources
        .merge(health)
        .merge(platform::openapi::router(&document(api)));
    // A read sent with a `traceparent` joins the caller's trace.
    platform::http::with_common_layers(app)
        .layer(axum::middleware::from_fn(platform::otel::traced_requests))
}

/// A lazily connecting pool for `config`: the process starts (and reports
/// not ready) while the database is down. Its sessions are named
/// [`APPLICATION_NAME`] and read-only by default, a second line of defence
/// behind the SELECT-only role.
pub fn connect(config: &Config) -> anyhow::Result<PgPool> {
    let pool = platform::db::connect_lazy(&config.db_config())
        .context("parsing --database-url (QUERY_DATABASE_URL)")?;
    platform::db::name_sessions(&pool, APPLICATION_NAME, true);
    Ok(pool)
}

/// Runs the API on `config.bind` until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    run_on(listener, config, shutdown).await
}

/// Runs the API on an already bound `listener` (tests bind port 0) until
/// `shutdown` is cancelled; `config.bind` is ignored.
pub async fn run_on(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = connect(&config)?;
    platform::metrics::spawn_pool_sampler(pool.clone(), "query", shutdown.clone());
    let app = router(AppState::new(pool.clone(), config.settings()));
    platform::http::serve(listener, app, shutdown)
        .await
        .context("serving HTTP")?;
    pool.close().await;
    Ok(())
}
