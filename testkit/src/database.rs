//! A fresh PostgreSQL database per test.

use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool};
use uuid::Uuid;

/// Credentials of the SELECT-only role the query side uses.
const QUERY_ROLE: &str = "orders_query:orders_query";

/// The server's admin URL: `DATABASE_URL`, or the `make infra-up` default.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| platform::db::DEFAULT_DATABASE_URL.to_owned())
}

/// A database created for one test, with every migration applied.
pub struct TestDatabase {
    /// Its name (`test_<uuid>`).
    pub name: String,
    /// URL for the owning role (the write side).
    pub url: String,
    /// URL for the SELECT-only query role.
    pub query_url: String,
    /// A pool connected as the owner.
    pub pool: PgPool,
}

impl TestDatabase {
    /// Creates a uniquely named database and migrates it.
    pub async fn create() -> Self {
        let admin = admin_url();
        let name = format!("test_{}", Uuid::new_v4().simple());
        let admin_pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot reach PostgreSQL at {admin}: {e} (run `make infra-up`)")
            });
        admin_pool
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        admin_pool.close().await;

        let url = with_database(&admin, &name);
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect(&url)
            .await
            .expect("connect to test database");
        platform::db::migrate(&pool)
            .await
            .expect("migrate test database");
        let query_url = with_credentials(&url, QUERY_ROLE);
        Self {
            name,
            url,
            query_url,
            pool,
        }
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
}
