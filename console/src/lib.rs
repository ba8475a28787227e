//! The web console: a small read-only window on the running system, with
//! one guarded write (re-driving dead letters).
//!
//! - `/`: search orders (read models) by id, user and status, paged;
//! - `/orders/{id}`: an order's timeline: every event of its stream and
//!   every event other streams got because of it (following correlation and
//!   causation ids), its payment and its saga (phase, next deadline);
//! - `/system`: projection lag and outbox backlog, refreshed live from
//!   `/system.json`;
//! - `/dead-letters`: parked messages, each with its payload, headers and
//!   reason, and a re-drive that needs `CONSOLE_ADMIN_TOKEN`.
//!
//! Pages are rendered on the server ([`html`]: everything escaped); the
//! stylesheet and the one small script are embedded ([`routes::assets`]).

pub mod auth;
pub mod config;
pub mod dead_letters;
pub mod error;
pub mod html;
pub mod routes;
pub mod system;
pub mod timeline;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::AdminToken;
pub use config::Config;
pub use error::ConsoleError;

/// The `application_name` of the console's read-only sessions.
pub const APPLICATION_NAME: &str = "console";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    reader: PgPool,
    writer: PgPool,
    token: AdminToken,
    saga: saga::Handler,
    refresh: Duration,
}

impl AppState {
    /// State over `reader` (read-only sessions, for every page) and `writer`
    /// (for re-drives only), guarded by `token`; saga letters are re-driven
    /// with `policy`.
    pub fn new(
        reader: PgPool,
        writer: PgPool,
        token: AdminToken,
        policy: domain::saga::SagaPolicy,
        refresh: Duration,
    ) -> Self {
        let saga = saga::Handler::new(writer.clone(), policy);
        Self {
            inner: Arc::new(Inner {
                reader,
                writer,
                token,
                saga,
                refresh,
            }),
        }
    }

    /// The read-only pool the pages read through.
    pub fn reader(&self) -> &PgPool {
        &self.inner.reader
    }

    /// The pool re-drives write through.
    pub fn writer(&self) -> &PgPool {
        &self.inner.writer
    }

    /// The admin token.
    pub fn token(&self) -> &AdminToken {
        &self.inner.token
    }

    /// The saga handler re-drives go through.
    pub fn saga(&self) -> &saga::Handler {
        &self.inner.saga
    }

    /// How often `/system` refreshes.
    pub fn refresh(&self) -> Duration {
        self.inner.refresh
    }
}

/// The whole console: pages, assets, health probes, `/metrics` and the
/// common layers.
pub fn router(state: AppState) -> Router {
    let health =
        platform::http::health_router(platform::http::database_readiness(state.reader().clone()));
    platform::http::with_common_layers(routes::router(state).merge(health))
}

/// The two lazily connecting pools for `config` (the process starts, and
/// reports not ready, while the database is down): read-only sessions for
/// the pages, and a small pool for re-drives.
pub fn connect(config: &Config) -> anyhow::Result<(PgPool, PgPool)> {
    let reader = platform::db::connect_lazy(&config.db).context("parsing --database-url")?;
    platform::db::name_sessions(&reader, APPLICATION_NAME, true);
    let mut db = config.db.clone();
    // A re-drive holds one connection for its order's or stream's lock
    // while the handler or apply path uses another: room for two at once.
    db.max_connections = 4;
    let writer = platform::db::connect_lazy(&db).context("parsing --database-url")?;
    platform::db::name_sessions(&writer, "console-redrive", false);
    Ok((reader, writer))
}

/// Runs the console on `config.bind` until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    run_on(listener, config, shutdown).await
}

/// Runs the console on an already bound `listener` (tests bind port 0)
/// until `shutdown` is cancelled; `config.bind` is ignored.
pub async fn run_on(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (reader, writer) = connect(&config)?;
    platform::metrics::spawn_pool_sampler(reader.clone(), "console", shutdown.clone());
    if config.admin_token().is_none() {
        tracing::info!("CONSOLE_ADMIN_TOKEN is not set: re-drive is disabled");
    }
    let state = AppState::new(
        reader.clone(),
        writer.clone(),
        AdminToken::new(config.admin_token()),
        config.saga_policy(),
        config.refresh(),
    );
    platform::http::serve(listener, router(state), shutdown)
        .await
        .context("serving HTTP")?;
    reader.close().await;
    writer.close().await;
    Ok(())
}
