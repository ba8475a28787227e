//! A payment provider simulator: a stand-in for a real provider, with its
//! ledger in the Postgres schema `gateway`.
//!
//! `POST /charges` (`Idempotency-Key` required), `GET /charges/{id}`,
//! `GET /charges?reference=` and `POST /charges/{id}/refund`, plus the health
//! probes. Card tokens behave like a real provider's test cards (see
//! [`behaviour::Scenario`]): `tok_decline[_<code>]`, `tok_timeout*`,
//! `tok_hang*`, `tok_flaky*`, anything else captures. Flags add latency and
//! random failures for load tests ([`Behaviour`]).
//!
//! Public surface: [`Config`], [`AppState`], [`Behaviour`], [`router`],
//! [`run`], and [`ledger`] for other crates' tests.

#![warn(missing_docs)]

pub mod behaviour;
pub mod config;
pub mod error;
pub mod extract;
pub mod faults;
pub mod ledger;
pub mod request;
pub mod routes;
mod state;
pub mod view;

use anyhow::Context as _;
use axum::{middleware, Router};
use platform::http::{database_readiness, health_router, with_common_layers};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use behaviour::Behaviour;
pub use config::Config;
pub use error::GatewayError;
pub use state::AppState;

/// The whole HTTP API: charge and refund routes (with the simulated faults),
/// health probes, the common layers and a server span per request (a child
/// of the caller's `traceparent` when spans are exported).
pub fn router(state: AppState) -> Router {
    let readiness = database_readiness(state.pool().clone());
    let writes = Router::new()
        .merge(routes::charges::write_router())
        .merge(routes::refunds::router())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            faults::inject_failures,
        ));
    let charges = routes::charges::read_router()
        .merge(writes)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            faults::add_latency,
        ))
        .with_state(state);
    let app = charges.merge(health_router(readiness));
    // Outermost: the server span continues the caller's `traceparent`.
    with_common_layers(app).layer(middleware::from_fn(platform::otel::traced_requests))
}

/// Runs the simulator until `shutdown` is cancelled: connects to PostgreSQL
/// (lazily), checks that the schema is fully migrated
/// unless `--skip-schema-check`, binds
/// `config.bind` and serves.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = platform::db::connect_lazy(&config.db).context("invalid database configuration")?;
    if !config.skip_schema_check {
        platform::db::ensure_migrated(&pool)
            .await
            .context("checking the database schema")?;
    }
    let listener = TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    platform::metrics::spawn_pool_sampler(pool.clone(), "gateway", shutdown.clone());
    let state = AppState::new(pool.clone(), config.behaviour());
    platform::http::serve(listener, router(state), shutdown)
        .await
        .context("serving HTTP")?;
    pool.close().await;
    Ok(())
}
