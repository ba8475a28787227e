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

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use domain::{Aggregate, DomainEvent};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::aggregate::CommandError;
use crate::envelope::{EventEnvelope, Metadata, NewEvent};
use crate::store::{append, Appended, ExpectedVersion, ENVELOPE_COLUMNS};

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
type AnyState = Arc<dyn Any + Send + Sync>;

/// Where a stream's state was folded up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Point {
    version: i64,
    position: i64,
    last_event_id: Option<Uuid>,
    /// Version of the stream's latest snapshot known here (0: none).
    snapshot_version: i64,
}

/// What a stream's fold starts from: a cached or snapshot state, or nothing.
#[derive(Clone)]
struct Base {
    state: Option<AnyState>,
    at: Point,
    /// From the cache (to be checked against the log), not a snapshot.
    cached: bool,
}

#[derive(Clone)]
struct Entry {
    stream_type: &'static str,
    state: AnyState,
    at: Point,
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
    at: Point,
}

impl<S> Loaded<S> {
    /// Whether the stream has no events.
    pub fn is_new(&self) -> bool {
        self.version == 0
    }
}

/// Which stream to load as which aggregate, for [`Repository::prefetch`].
#[derive(Clone, Copy)]
pub struct LoadRequest {
    stream_id: Uuid,
    stream_type: &'static str,
    state_version: i32,
    decode_snapshot: fn(serde_json::Value) -> Option<AnyState>,
}

impl LoadRequest {
    /// The stream to load.
    pub fn stream_id(&self) -> Uuid {
        self.stream_id
    }

    /// Load `stream_id` as an `A`.
    pub fn of<A: Aggregate>(stream_id: Uuid) -> Self {
        fn decode<A: Aggregate>(state: serde_json::Value) -> Option<AnyState> {
            let state: A::State = serde_json::from_value(state).ok()?;
            Some(Arc::new(state))
        }
        Self {
            stream_id,
            stream_type: <A::Event as DomainEvent>::STREAM_TYPE,
            state_version: A::STATE_VERSION,
            decode_snapshot: decode::<A>,
        }
    }
}

/// What [`Repository::prefetch`] read: for each stream, a base state and
/// the events after it. Folding them ([`Prefetched::load`]) needs no I/O.
#[derive(Default)]
pub struct Prefetched {
    streams: HashMap<Uuid, Fetched>,
    /// Where folded states are remembered.
    repository: Option<Repository>,
}

struct Fetched {
    /// The type the stream has in the log (`None`: it does not exist).
    found_type: Option<String>,
    base: Option<AnyState>,
    /// Whether `base` came from the cache.
    cached: bool,
    at: Point,
    tail: Vec<EventEnvelope>,
}

impl Fetched {
    /// Whether folding it gives a state the cache does not hold yet.
    fn renews_cache(&self) -> bool {
        !self.cached || !self.tail.is_empty()
    }
}

impl Prefetched {
    /// The version and last global position of `stream_id` as read (0, 0
    /// for a stream without events); `None` if it was not prefetched.
    pub fn point(&self, stream_id: Uuid) -> Option<(i64, i64)> {
        let fetched = self.streams.get(&stream_id)?;
        Some(match fetched.tail.last() {
            Some(last) => (last.stream_version, last.global_position),
            None => (fetched.at.version, fetched.at.position),
        })
    }

    /// Folds stream `stream_id`, which must have been prefetched, as an `A`
    /// (and remembers the result in the repository's cache).
    pub fn load<A: Aggregate>(&self, stream_id: Uuid) -> Result<Loaded<A::State>, CommandError> {
        let fetched = self
            .streams
            .get(&stream_id)
            .ok_or(CommandError::NotPrefetched(stream_id))?;
        let stream_type = <A::Event as DomainEvent>::STREAM_TYPE;
        if let Some(found) = fetched.found_type.as_deref().filter(|t| *t != stream_type) {
            return Err(CommandError::WrongStreamType {
                stream_id,
                requested: stream_type,
                actual: found.to_owned(),
            });
        }
        let mut state = match &fetched.base {
            Some(base) => base
                .downcast_ref::<A::State>()
                .cloned()
                .ok_or(CommandError::NotPrefetched(stream_id))?,
            None => A::State::default(),
        };
        let mut at = fetched.at;
        for envelope in &fetched.tail {
            let event: A::Event = envelope
                .decode()
                .map_err(|source| CommandError::Decode { stream_id, source })?;
            state = A::evolve(state, &event);
            at.version = envelope.stream_version;
            at.position = envelope.global_position;
            at.last_event_id = Some(envelope.event_id);
        }
        let loaded = Loaded {
            state,
            version: at.version,
            position: at.position,
            at,
        };
        if let Some(repository) = self.repository.as_ref().filter(|_| fetched.renews_cache()) {
            repository.remember::<A>(stream_id, &loaded);
        }
        Ok(loaded)
    }
}

/// A snapshot about to be written.
#[derive(Debug, Clone)]
pub struct Snapshot {
    stream_id: Uuid,
    stream_type: &'static str,
    state_version: i32,
    version: i64,
    position: i64,
    last_event_id: Uuid,
    state: serde_json::Value,
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
}

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

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        // A panic while holding the lock leaves nothing half-written: entries
        // are replaced whole.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        .await?;
        let mut loaded = self.record::<A>(stream_id, loaded, &events, &appended);
        if let Some(snapshot) = self.snapshot_due::<A>(stream_id, &mut loaded) {
            save_snapshots(conn, &[snapshot]).await?;
        }
        Ok(Ok(Some(appended)))
    }
}

/// Writes `snapshots` in one statement, each replacing an older one of its stream.
pub async fn save_snapshots(
    conn: &mut PgConnection,
    snapshots: &[Snapshot],
) -> Result<(), CommandError> {
    let Some(first) = snapshots.first() else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO eventstore.snapshots
             (stream_id, stream_type, state_version, version, position, last_event_id, state)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int[], $4::bigint[], $5::bigint[], $6::uuid[], $7::jsonb[])
         ON CONFLICT (stream_id) DO UPDATE SET
             stream_type = EXCLUDED.stream_type, state_version = EXCLUDED.state_version,
             version = EXCLUDED.version, position = EXCLUDED.position,
             last_event_id = EXCLUDED.last_event_id, state = EXCLUDED.state, taken_at = now()
         WHERE snapshots.version < EXCLUDED.version OR snapshots.state_version <> EXCLUDED.state_version",
    )
    .bind(snapshots.iter().map(|s| s.stream_id).collect::<Vec<_>>())
    .bind(snapshots.iter().map(|s| s.stream_type).collect::<Vec<_>>())
    .bind(snapshots.iter().map(|s| s.state_version).collect::<Vec<_>>())
    .bind(snapshots.iter().map(|s| s.version).collect::<Vec<_>>())
    .bind(snapshots.iter().map(|s| s.position).collect::<Vec<_>>())
    .bind(snapshots.iter().map(|s| s.last_event_id).collect::<Vec<_>>())
    .bind(snapshots.iter().map(|s| &s.state).collect::<Vec<_>>())
    .execute(conn)
    .await
    .map_err(|source| CommandError::Read {
        stream_id: first.stream_id,
        source,
    })?;
    Ok(())
}

/// The usable snapshots of `requests`: of the requested type and state
/// version, and decodable. Others are left out (their streams fold from 1).
async fn read_snapshots(
    conn: &mut PgConnection,
    requests: &[LoadRequest],
) -> Result<HashMap<Uuid, Base>, CommandError> {
    let Some(first) = requests.first() else {
        return Ok(HashMap::new());
    };
    let ids: Vec<Uuid> = requests.iter().map(|r| r.stream_id).collect();
    let rows = sqlx::query(
        "SELECT stream_id, stream_type, state_version, version, position, last_event_id, state
         FROM eventstore.snapshots WHERE stream_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(|source| CommandError::Read {
        stream_id: first.stream_id,
        source,
    })?;
    let by_id: HashMap<Uuid, &LoadRequest> = requests.iter().map(|r| (r.stream_id, r)).collect();
    let mut bases = HashMap::new();
    for row in rows {
        let decoded = (|| -> Result<Option<(Uuid, Base)>, sqlx::Error> {
            let stream_id: Uuid = row.try_get("stream_id")?;
            let Some(request) = by_id.get(&stream_id) else {
                return Ok(None);
            };
            let stream_type: String = row.try_get("stream_type")?;
            let state_version: i32 = row.try_get("state_version")?;
            if stream_type != request.stream_type || state_version != request.state_version {
                tracing::debug!(%stream_id, state_version, "ignoring a snapshot of another state version");
                return Ok(None);
            }
            let Some(state) = (request.decode_snapshot)(row.try_get("state")?) else {
                tracing::warn!(%stream_id, "ignoring a snapshot that does not decode");
                return Ok(None);
            };
            let version: i64 = row.try_get("version")?;
            let at = Point {
                version,
                position: row.try_get("position")?,
                last_event_id: Some(row.try_get("last_event_id")?),
                snapshot_version: version,
            };
            let base = Base {
                state: Some(state),
                at,
                cached: false,
            };
            Ok(Some((stream_id, base)))
        })()
        .map_err(|source| CommandError::Read {
            stream_id: first.stream_id,
            source,
        })?;
        bases.extend(decoded);
    }
    Ok(bases)
}

/// Reads, for every request, the stream's type and its events after the
/// base (from the base's own last event, for cached bases, to check it).
/// A cached base whose last event is not in the log as remembered is left
/// out of the result: the caller reloads it.
async fn read_tails(
    conn: &mut PgConnection,
    requests: &[LoadRequest],
    bases: &HashMap<Uuid, Base>,
) -> Result<Prefetched, CommandError> {
    let Some(first) = requests.first() else {
        return Ok(Prefetched::default());
    };
    let ids: Vec<Uuid> = requests.iter().map(|r| r.stream_id).collect();
    let types: Vec<&str> = requests.iter().map(|r| r.stream_type).collect();
    let from: Vec<i64> = requests
        .iter()
        .map(|r| match bases.get(&r.stream_id) {
            Some(base) if base.cached => base.at.version,
            Some(base) => base.at.version + 1,
            None => 1,
        })
        .collect();
    let columns: Vec<String> = ENVELOPE_COLUMNS
        .split(',')
        .map(|c| format!("e.{}", c.trim()))
        .collect();
    let sql = format!(
        "SELECT c.stream_id AS requested, s.stream_type AS found_type, {columns}
         FROM UNNEST($1::uuid[], $2::text[], $3::bigint[]) AS c(stream_id, stream_type, from_version)
         LEFT JOIN eventstore.streams s ON s.stream_id = c.stream_id
         LEFT JOIN LATERAL (
             SELECT * FROM eventstore.events
             WHERE stream_id = c.stream_id AND stream_version >= c.from_version
               AND s.stream_type = c.stream_type
             ORDER BY stream_version
         ) e ON TRUE
         ORDER BY c.stream_id, e.stream_version",
        columns = columns.join(", ")
    );
    let read_error = |source| CommandError::Read {
        stream_id: first.stream_id,
        source,
    };
    let rows = sqlx::query(&sql)
        .bind(&ids)
        .bind(&types)
        .bind(&from)
        .fetch_all(&mut *conn)
        .await
        .map_err(read_error)?;

    let mut streams: HashMap<Uuid, Fetched> = HashMap::new();
    // Cached bases whose own last event was read back unchanged.
    let mut confirmed: HashSet<Uuid> = HashSet::new();
    for row in rows {
        let requested: Uuid = row.try_get("requested").map_err(read_error)?;
        let found_type: Option<String> = row.try_get("found_type").map_err(read_error)?;
        let Base { state, at, cached } = bases.get(&requested).cloned().unwrap_or(Base {
            state: None,
            at: Point::default(),
            cached: false,
        });
        let fetched = streams.entry(requested).or_insert_with(|| Fetched {
            found_type,
            base: state,
            cached,
            at,
            tail: Vec::new(),
        });
        let event_id: Option<Uuid> = row.try_get("event_id").map_err(read_error)?;
        if event_id.is_none() {
            continue;
        }
        let envelope = <EventEnvelope as sqlx::FromRow<_>>::from_row(&row).map_err(read_error)?;
        if cached && envelope.stream_version == at.version {
            // The cached base's own last event: only read to check it.
            if Some(envelope.event_id) == at.last_event_id {
                confirmed.insert(requested);
            }
            continue;
        }
        fetched.tail.push(envelope);
    }
    // A cached base not confirmed is stale: leave it out, the caller reloads it.
    streams.retain(|id, _| match bases.get(id) {
        Some(base) if base.cached => confirmed.contains(id),
        _ => true,
    });
    Ok(Prefetched {
        streams,
        repository: None,
    })
}
