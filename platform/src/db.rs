//! PostgreSQL connection pools and error classification.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// Default URL: the private cluster that `make infra-up` starts.
pub const DEFAULT_DATABASE_URL: &str = "postgres://orders:orders@127.0.0.1:5432/orders";

/// How a process connects to PostgreSQL.
#[derive(Debug, Clone, clap::Args)]
pub struct DbConfig {
    /// PostgreSQL connection URL.
    #[arg(long = "database-url", env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub url: String,
    /// Maximum number of pooled connections.
    #[arg(
        long = "db-max-connections",
        env = "DB_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub max_connections: u32,
    /// How long a request waits for a connection before the database counts as unavailable (ms).
    #[arg(
        long = "db-acquire-timeout-ms",
        env = "DB_ACQUIRE_TIMEOUT_MS",
        default_value_t = 3000
    )]
    pub acquire_timeout_ms: u64,
}

impl DbConfig {
    /// A configuration for `url` with the default pool settings.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            acquire_timeout_ms: 3000,
        }
    }
}

/// Builds a pool that connects lazily, so a process starts (and reports not
/// ready) while the database is down, and recovers when it comes back.
pub fn connect_lazy(config: &DbConfig) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = config.url.parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
        .connect_lazy_with(options))
}

/// Names the sessions of `pool` `application_name` and, with `read_only`,
/// makes every transaction read-only by default (a second line of defence
/// behind a role's grants). Applies to connections opened from now on.
pub fn name_sessions(pool: &PgPool, application_name: &str, read_only: bool) {
    let mut options = (*pool.connect_options())
        .clone()
        .application_name(application_name);
    if read_only {
        options = options.options([("default_transaction_read_only", "on")]);
    }
    pool.set_connect_options(options);
}

/// True when the error means "the database cannot be reached right now"
/// (as opposed to a bug or a constraint violation): callers map it to 503.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P01..03: shutdown / cannot connect now;
            // 53300: too many connections.
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
        _ => false,
    }
}

/// True for a serialization failure or deadlock, which a caller may retry.
pub fn is_retryable_conflict(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.code().is_some_and(|code| code == "40001" || code == "40P01"))
}

/// True for a unique-constraint violation, optionally on a given constraint.
pub fn is_unique_violation(error: &sqlx::Error, constraint: Option<&str>) -> bool {
    match error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            constraint.is_none() || db.constraint() == constraint
        }
        _ => false,
    }
}

/// The schema migrations of the whole system (event log, outbox, command
/// bookkeeping, read models), embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Applies pending migrations. Safe to run concurrently (sqlx takes an
/// advisory lock) and repeatedly.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
