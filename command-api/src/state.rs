//! Shared state of the HTTP handlers.

use sqlx::PgPool;

use crate::handling::retry::RetryPolicy;

/// What every handler needs: the database pool and the retry policy.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) pool: PgPool,
    pub(crate) retry: RetryPolicy,
}

impl AppState {
    /// State over `pool` with the default retry policy (5 attempts, small jittered backoff).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            retry: RetryPolicy::default(),
        }
    }

    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}
