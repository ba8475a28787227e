//! Shared state of the HTTP handlers.

use eventstore::{Repository, RepositorySettings};
use sqlx::PgPool;

use crate::handling::writer::{WriterSettings, Writers};

/// What every handler needs: the database pool and the group-commit writers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) pool: PgPool,
    pub(crate) writers: Writers,
}

impl AppState {
    /// State over `pool` with default writers (starts them: needs a Tokio runtime).
    pub fn new(pool: PgPool) -> Self {
        Self::with_settings(pool, WriterSettings::default())
    }

    /// State over `pool` with `settings` for the writers.
    pub fn with_settings(pool: PgPool, settings: WriterSettings) -> Self {
        let repository = Repository::new(RepositorySettings::default());
        Self {
            writers: Writers::start(pool.clone(), repository, settings),
            pool,
        }
    }

    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Commands waiting for their writer.
    pub fn queued_commands(&self) -> usize {
        self.writers.queued()
    }
}
