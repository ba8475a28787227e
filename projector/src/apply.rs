//! Applying events to projections exactly once: the next-version rule,
//! written once for every projection.
//!
//! Every read-model row carries the version of its stream. For a batch of
//! events, inside the caller's transaction, [`apply_batch`] loads (and
//! locks) every touched row with one statement per table and compares, per
//! stream:
//!
//! - an event at or below the row's version is a duplicate, skipped;
//! - the next version (or version 1 of a stream without a row) is applied;
//! - further ahead is a gap (after a replay swap or an out-of-order
//!   redelivery): the missing events of every gapped stream of the batch are
//!   read from the log, the source of truth, in one query, and applied in
//!   order up to the highest version the batch holds.
//!
//! Rows are folded in memory and written back with one multi-row upsert per
//! table. An event that cannot be decoded stops its stream only: the stream
//! keeps what was folded before it, its later events in the batch are
//! rejected with it, every other stream is applied. So redelivery never
//! applies an event twice and a gap never loses one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use eventstore::scan::{self, StreamRange};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projection::{Decoded, Fold, Projection, Schema};

/// Why an event could not be applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApplyError {
    /// PostgreSQL failed; the transaction must be rolled back and retried.
    #[error("database error while {context}: {source}")]
    Database {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// The event's type or payload is not one this projector understands.
    #[error(
        "cannot project event {event_id} ({event_type}, stream {stream_id} version {stream_version}, \
         position {global_position}): {source}"
    )]
    Decode {
        /// The event's id.
        event_id: Uuid,
        /// Its type name.
        event_type: String,
        /// Its stream.
        stream_id: Uuid,
        /// Its version in the stream.
        stream_version: i64,
        /// Its position in the log.
        global_position: i64,
        /// What the decoder reported (it names the unknown type).
        #[source]
        source: Box<domain::EventDecodeError>,
    },
    /// The log does not hold the events needed to close a gap.
    #[error(
        "stream {stream_id}: version {wanted} is not in the event log (the log has up to version {found})"
    )]
    MissingFromLog {
        /// The stream.
        stream_id: Uuid,
        /// The version that was to be applied.
        wanted: i64,
        /// The last version found in the log.
        found: i64,
    },
}

impl ApplyError {
    /// A database error with what was being done.
    pub fn database(context: impl Into<String>, source: sqlx::Error) -> Self {
        Self::Database {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// A decoding error for `event`.
    pub fn decode(event: &Decoded, source: domain::EventDecodeError) -> Self {
        Self::Decode {
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            stream_id: event.stream_id,
            stream_version: event.stream_version,
            global_position: event.global_position,
            source: Box::new(source),
        }
    }

    /// Whether retrying the same event later can succeed (the database
    /// failed), as opposed to an event that will never apply.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Database { .. })
    }
}

/// What became of one event of a batch.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Applied to at least one projection.
    Applied,
    /// Every projection already had it.
    Duplicate,
    /// No projection consumes its stream type.
    Ignored,
    /// It cannot be applied (nor can its stream's later events): poison.
    Rejected(ApplyError),
}

/// Whether [`fold_next`] applied the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// It was the next version: folded in.
    Applied,
    /// At or below the version folded so far: skipped.
    Duplicate,
}

/// The next-version rule for one event and one fold: a duplicate is
/// skipped, the next version applied, anything further ahead is a gap the
/// caller failed to fill ([`ApplyError::MissingFromLog`]).
pub fn fold_next(fold: &mut dyn Fold, event: &Decoded) -> Result<Step, ApplyError> {
    let current = fold.version(event.stream_id);
    if event.stream_version <= current {
        return Ok(Step::Duplicate);
    }
    if event.stream_version > current + 1 {
        return Err(ApplyError::MissingFromLog {
            stream_id: event.stream_id,
            wanted: event.stream_version,
            found: current,
        });
    }
    fold.apply(event)?;
    Ok(Step::Applied)
}

/// One projection's share of a batch.
struct Share {
    projection: &'static dyn Projection,
    fold: Box<dyn Fold>,
    /// Per stream: the version the read model had, and the failure (at
    /// which version, why) that stopped the stream, if any.
    streams: HashMap<Uuid, (i64, Option<(i64, ApplyError)>)>,
}

/// Applies `events` (in any order, with duplicates and gaps) to every
/// projection of `projections` that consumes them, inside the caller's
/// transaction; returns one verdict per event. Only database failures are
/// errors: the caller rolls back and retries the whole batch.
pub async fn apply_batch(
    conn: &mut PgConnection,
    schema: Schema,
    projections: &[&'static dyn Projection],
    events: &[Decoded],
) -> Result<Vec<Verdict>, ApplyError> {
    // Per projection: load every touched row, note the versions it has.
    let mut shares = Vec::new();
    for projection in projections {
        let ids: Vec<Uuid> = events
            .iter()
            .filter(|e| projection.handles(&e.stream_type))
            .map(|e| e.stream_id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        let mut fold = projection.fold();
        fold.load(conn, schema, &ids).await.map_err(|source| {
            ApplyError::database(format!("loading {} rows", projection.name()), source)
        })?;
        let streams = ids
            .iter()
            .map(|id| (*id, (fold.version(*id), None)))
            .collect();
        shares.push(Share {
            projection: *projection,
            fold,
            streams,
        });
    }

    // What each stream needs: the batch's events above the row's version,
    // and one log read for every stream whose batch events leave a hole.
    let mut by_stream: HashMap<Uuid, BTreeMap<i64, &Decoded>> = HashMap::new();
    for event in events {
        by_stream
            .entry(event.stream_id)
            .or_default()
            .insert(event.stream_version, event);
    }
    let mut gaps: HashMap<Uuid, (i64, i64)> = HashMap::new();
    for share in &shares {
        for (id, (current, _)) in &share.streams {
            let batch = &by_stream[id];
            let wanted = batch.keys().next_back().copied().unwrap_or(0);
            let have = batch.range(current + 1..).count() as i64;
            if wanted > *current && have < wanted - current {
                let gap = gaps.entry(*id).or_insert((*current, wanted));
                *gap = (gap.0.min(*current), gap.1.max(wanted));
            }
        }
    }
    let from_log = read_gaps(conn, &gaps).await?;

    // Fold every stream in version order, then write each table once.
    for share in &mut shares {
        for (id, (current, failure)) in &mut share.streams {
            let batch = &by_stream[id];
            let wanted = batch.keys().next_back().copied().unwrap_or(0);
            for version in *current + 1..=wanted {
                let event = from_log
                    .get(id)
                    .and_then(|log| log.get(&version))
                    .or_else(|| batch.get(&version).copied());
                let outcome = match event {
                    Some(event) => fold_next(share.fold.as_mut(), event).map(|_| ()),
                    None => Err(ApplyError::MissingFromLog {
                        stream_id: *id,
                        wanted,
                        found: version - 1,
                    }),
                };
                if let Err(error) = outcome {
                    *failure = Some((version, error));
                    break;
                }
            }
        }
        share.fold.store(conn, schema).await.map_err(|source| {
            ApplyError::database(format!("writing {} rows", share.projection.name()), source)
        })?;
    }
    Ok(events.iter().map(|e| verdict(&shares, e)).collect())
}

/// Reads the missing events of every gapped stream in one query.
async fn read_gaps(
    conn: &mut PgConnection,
    gaps: &HashMap<Uuid, (i64, i64)>,
) -> Result<HashMap<Uuid, BTreeMap<i64, Decoded>>, ApplyError> {
    let mut from_log: HashMap<Uuid, BTreeMap<i64, Decoded>> = HashMap::new();
    if gaps.is_empty() {
        return Ok(from_log);
    }
    let ranges: Vec<StreamRange> = gaps
        .iter()
        .map(|(id, (after, up_to))| StreamRange {
            stream_id: *id,
            after_version: *after,
            up_to_version: Some(*up_to),
        })
        .collect();
    tracing::debug!(
        streams = ranges.len(),
        "gaps in the batch: reading the missing events from the log"
    );
    let missing = scan::read_ranges(conn, &ranges)
        .await
        .map_err(|source| ApplyError::database("reading the events of gapped streams", source))?;
    for envelope in &missing {
        from_log
            .entry(envelope.stream_id)
            .or_default()
            .insert(envelope.stream_version, Decoded::from_envelope(envelope));
    }
    Ok(from_log)
}

/// What became of `event` across the projections that consume it.
fn verdict(shares: &[Share], event: &Decoded) -> Verdict {
    let mut verdict = Verdict::Ignored;
    for share in shares {
        let Some((current, failure)) = share.streams.get(&event.stream_id) else {
            continue;
        };
        if !share.projection.handles(&event.stream_type) {
            continue;
        }
        match failure {
            Some((at, error)) if *at <= event.stream_version => {
                return Verdict::Rejected(error.clone());
            }
            _ if event.stream_version > *current => verdict = Verdict::Applied,
            _ if matches!(verdict, Verdict::Ignored) => verdict = Verdict::Duplicate,
            _ => {}
        }
    }
    verdict
}
