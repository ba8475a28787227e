//! A fresh PostgreSQL database per test, laid out like production: owned
//! and migrated by the owner role, used through the application role.

use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool};
use uuid::Uuid;

/// Credentials of the owner role, which creates databases and migrates them.
pub const OWNER_ROLE: &str = "orders_owner:orders_owner";
/// Credentials of the SELECT-only role the query side uses.
pub const QUERY_ROLE: &str = "orders_query:orders_query";

/// The application role's URL on the server: `DATABASE_URL`, or the
/// `make infra-up` default.
pub fn app_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| platform::db::DEFAULT_DATABASE_URL.to_owned())
}

/// The owner role's URL on the server, which creates and drops databases:
/// `OWNER_DATABASE_URL`, else [`app_url`] with the owner's credentials.
pub fn admin_url() -> String {
    std::env::var("OWNER_DATABASE_URL").unwrap_or_else(|_| with_credentials(&app_url(), OWNER_ROLE))
}

/// The URLs of one database, one per role.
#[derive(Debug, Clone)]
pub struct DatabaseUrls {
    /// The application role (what services use; cannot alter the log).
    pub app: String,
    /// The owner role (migrations, DDL).
    pub owner: String,
    /// The SELECT-only query role.
    pub query: String,
}

impl DatabaseUrls {
    /// The URLs of database `name` on the server of [`app_url`].
    pub fn of(name: &str) -> Self {
        let app = with_database(&app_url(), name);
        Self {
            owner: with_database(&admin_url(), name),
            query: with_credentials(&app, QUERY_ROLE),
            app,
        }
    }
}

/// Creates database `name` owned by the owner role and, if `migrated`,
/// applies every migration as the owner. Used by the tests and the bench.
pub async fn create_database(name: &str, migrated: bool) -> anyhow::Result<DatabaseUrls> {
    let admin = admin_url();
    let admin_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach PostgreSQL as the owner role at {admin}: {e} (run `make infra-up`)"
            )
        })?;
    admin_pool
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    admin_pool.close().await;
    let urls = DatabaseUrls::of(name);
    if migrated {
        let owner = PgPoolOptions::new()
            .max_connections(1)
            .connect(&urls.owner)
            .await?;
        platform::db::migrate(&owner).await?;
        owner.close().await;
    }
    Ok(urls)
}

/// How long [`drop_database`] waits for sessions that were just closed to end.
const SESSIONS_GONE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Drops database `name` (closing whatever is still connected), as the owner.
///
/// A session its client has just closed can still be on the server for a
/// moment, and `WITH (FORCE)` would then try to terminate it, which the
/// owner role may not do to the application role's sessions ("must be a
/// member of the role whose process is being terminated", seen when the
/// benchmark dropped a database right after a replay). So it first waits
/// (bounded) until no session is left on the database.
pub async fn drop_database(name: &str) -> anyhow::Result<()> {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url())
        .await?;
    let begun = std::time::Instant::now();
    loop {
        let sessions: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(name)
                .fetch_one(&admin)
                .await?;
        if sessions == 0 || begun.elapsed() > SESSIONS_GONE_WAIT {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    admin.close().await;
    Ok(())
}

/// A database created for one test, with every migration applied. A clone
/// shares the pool.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    /// Its name (`test_<uuid>`).
    pub name: String,
    /// URL for the application role (the write side's processes).
    pub url: String,
    /// URL for the owner role (migrations; DDL a test needs).
    pub owner_url: String,
    /// URL for the SELECT-only query role.
    pub query_url: String,
    /// A pool connected as the application role.
    pub pool: PgPool,
}

impl TestDatabase {
    /// Creates a uniquely named database and migrates it as the owner.
    pub async fn create() -> Self {
        Self::new(true).await
    }

    /// Creates a uniquely named database with no migration applied.
    pub async fn create_unmigrated() -> Self {
        Self::new(false).await
    }

    async fn new(migrated: bool) -> Self {
        let name = format!("test_{}", Uuid::new_v4().simple());
        let urls = create_database(&name, migrated)
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e:#}"));
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect(&urls.app)
            .await
            .expect("connect to test database as the application role");
        Self {
            name,
            url: urls.app,
            owner_url: urls.owner,
            query_url: urls.query,
            pool,
        }
    }

    /// A pool connected as the owner role, for tests that need DDL the
    /// application role may not run (extra triggers, scratch tables).
    pub async fn owner_pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.owner_url)
            .await
            .expect("connect to test database as the owner role")
    }

    /// A pool connected as the query role.
    pub async fn query_pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.query_url)
            .await
            .expect("connect to test database as the query role")
    }
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let slash = base.rfind('/').expect("database URL has a path");
    let mut result = format!("{}/{database}", &base[..slash]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

/// `url` with its `user:password` replaced.
pub fn with_credentials(url: &str, credentials: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL has a scheme");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{credentials}@{host}")
}

/// The socket address of the server `url` points at (e.g. for a proxy in
/// front of it).
pub async fn server_address(url: &str) -> std::net::SocketAddr {
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("a PostgreSQL URL");
    let host = options.get_host().to_owned();
    tokio::net::lookup_host((host, options.get_port()))
        .await
        .expect("resolve the database host")
        .next()
        .expect("an address for the database host")
}

/// `url` with its host and port replaced by `address` (e.g. a proxy's).
pub fn with_address(url: &str, address: std::net::SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL has a scheme");
    let (credentials, host_and_path) = match rest.rsplit_once('@') {
        Some((credentials, host)) => (Some(credentials), host),
        None => (None, rest),
    };
    let path = host_and_path.find('/').map_or("", |i| &host_and_path[i..]);
    match credentials {
        Some(credentials) => format!("{scheme}://{credentials}@{address}{path}"),
        None => format!("{scheme}://{address}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rewritten() {
        let url = "postgres://orders:orders@127.0.0.1:5432/orders?sslmode=disable";
        assert_eq!(
            with_database(url, "t1"),
            "postgres://orders:orders@127.0.0.1:5432/t1?sslmode=disable"
        );
        assert_eq!(
            with_credentials("postgres://a:b@h:1/d", "q:r"),
            "postgres://q:r@h:1/d"
        );
        assert_eq!(
            with_address("postgres://a:b@h:1/d", "127.0.0.1:9".parse().unwrap()),
            "postgres://a:b@127.0.0.1:9/d"
        );
    }

    /// Regression (the benchmark's replay stage on the durable cluster): a
    /// session of the application role still on the database when it is
    /// dropped made `WITH (FORCE)` fail for the owner role. The drop now
    /// waits for it to end.
    #[tokio::test]
    async fn a_database_is_dropped_once_its_last_session_has_ended() {
        let name = format!("test_{}", Uuid::new_v4().simple());
        let urls = create_database(&name, true).await.expect("created");
        let app = PgPoolOptions::new()
            .max_connections(1)
            .connect(&urls.app)
            .await
            .expect("application role connects");
        app.execute("SELECT 1").await.expect("session in use");
        let dropping = tokio::spawn({
            let name = name.clone();
            async move { drop_database(&name).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!dropping.is_finished(), "the drop waits for the session");
        app.close().await;
        dropping
            .await
            .expect("drop task")
            .expect("dropped after the session ended");
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&admin_url())
            .await
            .expect("owner connects");
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&admin)
            .await
            .expect("catalog");
        assert_eq!(left, 0);
    }
}
