//! Shared state of the HTTP handlers.

use std::sync::Arc;

use sqlx::PgPool;

use crate::behaviour::Behaviour;

/// What every handler needs: the ledger's pool and the simulated behaviour.
#[derive(Debug, Clone)]
pub struct AppState {
    pool: PgPool,
    behaviour: Arc<Behaviour>,
}

impl AppState {
    /// State over `pool` (migrated, with schema `gateway`) behaving as `behaviour`.
    pub fn new(pool: PgPool, behaviour: Behaviour) -> Self {
        Self {
            pool,
            behaviour: Arc::new(behaviour),
        }
    }

    /// The ledger's pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The simulated latency and failures.
    pub fn behaviour(&self) -> &Behaviour {
        &self.behaviour
    }
}
