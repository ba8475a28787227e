//! Wake-ups on appends: a task owns the `LISTEN` connection and turns every
//! notification into a permit; many notifications between two reads
//! coalesce into one wake-up.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::RelayError;
use crate::store::OUTBOX_CHANNEL;

/// Listens for appends until dropped.
pub(super) struct Wake {
    notify: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Wake {
    /// Starts listening; notifications of commits after this returns are seen.
    pub(super) async fn listen(pool: &PgPool) -> Result<Self, RelayError> {
        let listening = |source| RelayError::Database {
            action: "listening for appends",
            source,
        };
        let mut listener = PgListener::connect_with(pool).await.map_err(listening)?;
        listener.listen(OUTBOX_CHANNEL).await.map_err(listening)?;
        let notify = Arc::new(Notify::new());
        let task = tokio::spawn({
            let notify = notify.clone();
            async move {
                loop {
                    match listener.recv().await {
                        Ok(_) => notify.notify_one(),
                        Err(error) => {
                            tracing::warn!(%error, "lost the append notifications; polling");
                            notify.notify_one();
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        });
        Ok(Self { notify, task })
    }

    /// Resolves at the next append notification (or at once if one came since the last call).
    pub(super) async fn appended(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        self.task.abort();
    }
}
