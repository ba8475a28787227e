//! The aggregate repository: the one place that turns streams into state.
//!
//! Loading a stream must not cost more as the stream grows. The repository
//! keeps, per process, the last state it saw of each stream (bounded), and
//! in Postgres a snapshot of a stream every [`RepositorySettings::snapshot_every`]
//! events. A load then reads only what is newer than what it has:
//!
//! - **cached**: one indexed read of the events from the cached version on.
//!   The cached entry remembers the id of its last event, and the read
//!   returns the event at that version too: if it is not the same event (the
//!   transaction that wrote it rolled back, or another process wrote there),
//!   the entry is dropped and the stream is loaded as if never seen. So a
//!   cache entry can be stale or wrong without ever being trusted wrongly.
//! - **snapshot**: the latest snapshot of the stream with this code's
//!   [`Aggregate::STATE_VERSION`], then the events after it. A snapshot of
//!   another version, or one that does not decode, is ignored and the
//!   stream is folded from its first event.
//!
//! Several streams (of any aggregate types) load in one or two round trips
//! with [`Repository::prefetch`], which is what group commit uses.

mod prefetch;
mod snapshot;

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use domain::{Aggregate, DomainEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::aggregate::CommandError;
use crate::envelope::{Metadata, NewEvent};
use crate::store::{append, lock_streams, AppendError, Appended, ExpectedVersion};

pub use prefetch::{LoadRequest, Prefetched};
pub use snapshot::{save_snapshots, Snapshot};

use prefetch::read_tails;
use snapshot::read_snapshots;

/// Tuning of a [`Repository`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepositorySettings {
    /// Streams whose state is kept in memory; beyond it some are forgotten.
    pub cache_capacity: usize,
    /// A snapshot is written once a stream is this many events past its
    /// last one (0: never).
    pub snapshot_every: i64,
}

impl Default for RepositorySettings {
    fn default() -> Self {
        Self {
            cache_capacity: 50_000,
            snapshot_every: 200,
        }
    }
}

/// A state of any aggregate type, shared between the cache and its readers.
pub(super) type AnyState = Arc<dyn Any + Send + Sync>;

/// Where a stream's state was folded up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Point {
    pub(super) version: i64,
    pub(super) position: i64,
    pub(super) last_event_id: Option<Uuid>,
    /// Version of the stream's latest snapshot known here (0: none).
    pub(super) snapshot_version: i64,
}

/// What a stream's fold starts from: a cached or snapshot state, or nothing.
#[derive(Clone)]
pub(super) struct Base {
    pub(super) state: Option<AnyState>,
    pub(super) at: Point,
    /// From the cache (to be checked against the log), not a snapshot.
    pub(super) cached: bool,
}

#[derive(Clone)]
pub(super) struct Entry {
    pub(super) stream_type: &'static str,
    pub(super) state: AnyState,
    pub(super) at: Point,
}

/// An aggregate's state and the stream version it was folded up to.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<S> {
    /// The state after every event of the stream.
    pub state: S,
    /// The version of the last event (0 if the stream has none).
    pub version: i64,
    /// The global position of the last event (0 if the stream has none).
    pub position: i64,
    pub(super) at: Point,
}

impl<S> Loaded<S> {
    /// Whether the stream has no events.
    pub fn is_new(&self) -> bool {
        self.version == 0
    }
}

/// Loads aggregates with cached state and snapshots, and runs commands.
/// Cheap to clone: clones share one cache.
#[derive(Clone, Default)]
pub struct Repository {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    settings: RepositorySettings,
    cache: Mutex<HashMap<Uuid, Entry>>,
    /// Streams that recently lost an optimistic race, and when.
    contended: Mutex<HashMap<Uuid, Instant>>,
}

/// How long a stream that lost a race is written pessimistically.
const CONTENDED_FOR: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("settings", &self.inner.settings)
            .field("cached", &self.cached_streams())
            .finish()
    }
}

impl Repository {
    /// A repository with its own, empty cache.
    pub fn new(settings: RepositorySettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                cache: Mutex::default(),
                contended: Mutex::default(),
            }),
        }
    }

    /// The process's shared repository, with default settings.
    pub fn shared() -> &'static Repository {
        static SHARED: OnceLock<Repository> = OnceLock::new();
        SHARED.get_or_init(Repository::default)
    }

    /// How many streams the cache holds.
    pub fn cached_streams(&self) -> usize {
        self.cache().len()
    }

    /// Forgets every cached state (the next loads read snapshots and the log).
    pub fn clear_cache(&self) {
        self.cache().clear();
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<Uuid, Entry>> {
        lock(&self.inner.cache)
    }

    /// Folds stream `stream_id` into `A`'s state.
    pub async fn load<A: Aggregate>(
        &self,
        conn: &mut PgConnection,
        stream_id: Uuid,
    ) -> Result<Loaded<A::State>, CommandError> {
        self.prefetch(conn, &[LoadRequest::of::<A>(stream_id)])
            .await?
            .load::<A>(stream_id)
    }

    /// Reads what it takes to fold every requested stream: one round trip
    /// when all are cached, two otherwise (plus one more for cache entries
    /// found stale).
    #[tracing::instrument(skip_all, fields(streams = requests.len()))]
    pub async fn prefetch(
        &self,
        conn: &mut PgConnection,
        requests: &[LoadRequest],
    ) -> Result<Prefetched, CommandError> {
        let mut requests: Vec<LoadRequest> = requests.to_vec();
        requests.sort_by_key(|r| r.stream_id);
        requests.dedup_by_key(|r| r.stream_id);

        let mut bases: HashMap<Uuid, Base> = HashMap::new();
        let mut misses = Vec::new();
        {
            let cache = self.cache();
            for request in &requests {
                match cache.get(&request.stream_id) {
                    Some(entry) if entry.stream_type == request.stream_type => {
                        let base = Base {
                            state: Some(entry.state.clone()),
                            at: entry.at,
                            cached: true,
                        };
                        bases.insert(request.stream_id, base);
                    }
                    _ => misses.push(*request),
                }
            }
        }
        bases.extend(read_snapshots(conn, &misses).await?);

        let mut prefetched = read_tails(conn, &requests, &bases).await?;
        let stale: Vec<LoadRequest> = requests
            .iter()
            .filter(|r| !prefetched.streams.contains_key(&r.stream_id))
            .copied()
            .collect();
        if !stale.is_empty() {
            tracing::debug!(streams = stale.len(), "cached states were stale; reloading");
            {
                let mut cache = self.cache();
                for request in &stale {
                    cache.remove(&request.stream_id);
                }
            }
            let bases = read_snapshots(conn, &stale).await?;
            let reloaded = read_tails(conn, &stale, &bases).await?;
            prefetched.streams.extend(reloaded.streams);
        }
        prefetched.repository = Some(self.clone());
        Ok(prefetched)
    }

    /// Remembers `loaded` as the state of `stream_id` after `events` were
    /// appended (as `appended`), and returns the new state. The cache entry
    /// is checked against the log on its next use, so this may be called
    /// before the transaction commits.
    pub fn record<A: Aggregate>(
        &self,
        stream_id: Uuid,
        loaded: Loaded<A::State>,
        events: &[A::Event],
        appended: &Appended,
    ) -> Loaded<A::State> {
        let state = events.iter().fold(loaded.state, A::evolve);
        let at = Point {
            version: appended.stream_version,
            position: appended.last_position,
            last_event_id: appended.events.last().map(|e| e.event_id),
            snapshot_version: loaded.at.snapshot_version,
        };
        let loaded = Loaded {
            state,
            version: at.version,
            position: at.position,
            at,
        };
        self.remember::<A>(stream_id, &loaded);
        loaded
    }

    /// Caches `loaded` as the state of `stream_id`.
    pub fn remember<A: Aggregate>(&self, stream_id: Uuid, loaded: &Loaded<A::State>) {
        if loaded.at.last_event_id.is_none() {
            return;
        }
        let entry = Entry {
            stream_type: <A::Event as DomainEvent>::STREAM_TYPE,
            state: Arc::new(loaded.state.clone()),
            at: loaded.at,
        };
        let mut cache = self.cache();
        let capacity = self.inner.settings.cache_capacity;
        if capacity == 0 {
            return;
        }
        if cache.len() >= capacity && !cache.contains_key(&stream_id) {
            // Forget an eighth, arbitrarily: a forgotten stream costs one
            // snapshot read on its next load, nothing more.
            let forget: Vec<Uuid> = cache.keys().take(capacity / 8 + 1).copied().collect();
            for id in forget {
                cache.remove(&id);
            }
        }
        cache.insert(stream_id, entry);
    }

    /// The snapshot to write for `loaded` if the stream has moved far enough
    /// past its last one; marks it taken in `loaded` (and the cache).
    pub fn snapshot_due<A: Aggregate>(
        &self,
        stream_id: Uuid,
        loaded: &mut Loaded<A::State>,
    ) -> Option<Snapshot> {
        let every = self.inner.settings.snapshot_every;
        let last_event_id = loaded.at.last_event_id?;
        if every <= 0 || loaded.version - loaded.at.snapshot_version < every {
            return None;
        }
        let state = serde_json::to_value(&loaded.state).ok()?;
        loaded.at.snapshot_version = loaded.version;
        self.remember::<A>(stream_id, loaded);
        Some(Snapshot {
            stream_id,
            stream_type: <A::Event as DomainEvent>::STREAM_TYPE,
            state_version: A::STATE_VERSION,
            version: loaded.version,
            position: loaded.position,
            last_event_id,
            state,
        })
    }

    fn is_contended(&self, stream_id: Uuid) -> bool {
        let contended = lock(&self.inner.contended);
        contended
            .get(&stream_id)
            .is_some_and(|since| since.elapsed() < CONTENDED_FOR)
    }

    /// Notes that an append to `stream_id` lost an optimistic race: for a
    /// while, [`lock_contended`](Self::lock_contended) locks it before it
    /// is read.
    pub fn mark_contended(&self, stream_id: Uuid) {
        let mut contended = lock(&self.inner.contended);
        if contended.len() >= 10_000 {
            contended.retain(|_, since| since.elapsed() < CONTENDED_FOR);
        }
        contended.insert(stream_id, Instant::now());
    }

    /// Takes the append locks (see [`lock_streams`]) of those of
    /// `stream_ids` that lost a race lately, so that a hot stream is read
    /// only once no other writer can move it: its append cannot lose the
    /// race again and waste a transaction. Streams never contended cost
    /// nothing (no round trip).
    pub async fn lock_contended(
        &self,
        conn: &mut PgConnection,
        stream_ids: &[Uuid],
    ) -> Result<(), CommandError> {
        let mut hot: Vec<Uuid> = stream_ids
            .iter()
            .copied()
            .filter(|id| self.is_contended(*id))
            .collect();
        hot.sort_unstable();
        hot.dedup();
        let Some(&first) = hot.first() else {
            return Ok(());
        };
        lock_streams(conn, &hot)
            .await
            .map_err(|source| CommandError::Read {
                stream_id: first,
                source,
            })
    }

    /// Loads `A` from `stream_id`, decides `command` and appends the events
    /// (expecting the loaded version) in the caller's transaction, writing a
    /// snapshot when one is due. The outer result is the infrastructure's,
    /// the inner one the domain's; `Ok(None)` inside means the command
    /// changed nothing.
    pub async fn execute<A: Aggregate>(
        &self,
        conn: &mut PgConnection,
        stream_id: Uuid,
        command: A::Command,
        metadata: &Metadata,
    ) -> Result<Result<Option<Appended>, A::Error>, CommandError> {
        self.lock_contended(conn, &[stream_id]).await?;
        let loaded = self.load::<A>(conn, stream_id).await?;
        let events = match A::decide(&loaded.state, command) {
            Ok(events) => events,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if events.is_empty() {
            return Ok(Ok(None));
        }
        let new_events: Vec<NewEvent> = events.iter().map(NewEvent::from_domain).collect();
        let appended = append(
            conn,
            <A::Event as DomainEvent>::STREAM_TYPE,
            stream_id,
            ExpectedVersion::Exact(loaded.version),
            &new_events,
            metadata,
        )
        .await
        .inspect_err(|error| {
            if matches!(error, AppendError::Conflict { .. }) {
                self.mark_contended(stream_id);
            }
        })?;
        let mut loaded = self.record::<A>(stream_id, loaded, &events, &appended);
        if let Some(snapshot) = self.snapshot_due::<A>(stream_id, &mut loaded) {
            save_snapshots(conn, &[snapshot]).await?;
        }
        Ok(Ok(Some(appended)))
    }
}

/// Locks a mutex; a panic while holding it leaves nothing half-written
/// (entries are replaced whole), so a poisoned one is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
