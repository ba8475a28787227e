//! Loading several streams at once: their bases (cached state or
//! snapshot) and the events after them, in one or two round trips.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use domain::{Aggregate, DomainEvent};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{AnyState, Base, Loaded, Point, Repository};
use crate::aggregate::CommandError;
use crate::envelope::EventEnvelope;
use crate::store::ENVELOPE_COLUMNS;

/// Which stream to load as which aggregate, for [`Repository::prefetch`].
#[derive(Clone, Copy)]
pub struct LoadRequest {
    pub(super) stream_id: Uuid,
    pub(super) stream_type: &'static str,
    pub(super) state_version: i32,
    pub(super) decode_snapshot: fn(serde_json::Value) -> Option<AnyState>,
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
    pub(super) streams: HashMap<Uuid, Fetched>,
    /// Where folded states are remembered.
    pub(super) repository: Option<Repository>,
}

pub(super) struct Fetched {
    /// The type the stream has in the log (`None`: it does not exist).
    pub(super) found_type: Option<String>,
    pub(super) base: Option<AnyState>,
    /// Whether `base` came from the cache.
    pub(super) cached: bool,
    pub(super) at: Point,
    pub(super) tail: Vec<EventEnvelope>,
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

/// Reads, for every request, the stream's type and its events after the
/// base (from the base's own last event, for cached bases, to check it).
/// A cached base whose last event is not in the log as remembered is left
/// out of the result: the caller reloads it.
pub(super) async fn read_tails(
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
