//! PostgreSQL connection pools and error classification.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// Default URL: the application role `orders` on the private cluster that
/// `make infra-up` starts. It can read and append to the log but not alter it.
pub const DEFAULT_DATABASE_URL: &str = "postgres://orders:orders@127.0.0.1:5432/orders";

/// Default URL of the owner role `orders_owner`, which owns the schema and
/// runs the migrations (the `migrate` binary, `OWNER_DATABASE_URL`).
pub const DEFAULT_OWNER_DATABASE_URL: &str =
    "postgres://orders_owner:orders_owner@127.0.0.1:5432/orders";

/// How to apply the migrations, named in the error of a process that finds
/// the schema behind.
pub const MIGRATE_HINT: &str = "apply the migrations as the owner role first: `make migrate`, \
     or `migrate --database-url <owner URL>` (env OWNER_DATABASE_URL)";

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
/// advisory lock) and repeatedly. Connect as the owner role: the roles
/// migration (0012) refuses to run as the application role.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Why a database's schema is not the one this binary was built for.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The database could not be reached.
    #[error("cannot reach the database to check its schema: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The applied migrations could not be read (no `_sqlx_migrations`
    /// table, or this role may not read it).
    #[error(
        "the database schema is not migrated (reading _sqlx_migrations: {source}); {MIGRATE_HINT}"
    )]
    Unreadable {
        /// What PostgreSQL answered.
        source: sqlx::Error,
    },
    /// Migrations this binary embeds are not applied (or failed half-way).
    #[error("the database schema is not fully migrated: missing {missing}; {MIGRATE_HINT}")]
    Missing {
        /// The missing migrations, `version (description)`, comma-separated.
        missing: String,
    },
    /// A migration was applied from a different file than this binary's.
    #[error(
        "migration {version} ({description}) in the database differs from this binary's copy; \
             the binary and the database come from different versions of the migrations"
    )]
    Changed {
        /// Its version.
        version: i64,
        /// Its description.
        description: String,
    },
}

/// Checks that every migration of [`MIGRATOR`] is applied, unchanged, to
/// the database behind `pool`. Services call it at start-up instead of
/// migrating: they connect as the application role, which may not change
/// the schema. Migrations applied that this binary does not know (a newer
/// schema) are accepted.
pub async fn ensure_migrated(pool: &PgPool) -> Result<(), SchemaError> {
    let applied: Vec<(i64, bool, Vec<u8>)> =
        sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations")
            .fetch_all(pool)
            .await
            .map_err(|e| {
                if is_unavailable(&e) {
                    SchemaError::Unavailable(e)
                } else {
                    SchemaError::Unreadable { source: e }
                }
            })?;
    let mut missing = Vec::new();
    for migration in MIGRATOR.iter() {
        if migration.migration_type.is_down_migration() {
            continue;
        }
        match applied.iter().find(|(v, ..)| *v == migration.version) {
            Some((_, true, checksum)) if checksum[..] != migration.checksum[..] => {
                return Err(SchemaError::Changed {
                    version: migration.version,
                    description: migration.description.to_string(),
                });
            }
            Some((_, true, _)) => {}
            _ => missing.push(format!("{} ({})", migration.version, migration.description)),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(SchemaError::Missing {
            missing: missing.join(", "),
        })
    }
}
