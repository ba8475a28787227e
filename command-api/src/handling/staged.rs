//! The streams' states during one batch: what was loaded, plus the events
//! the batch's commands decided so far, in order.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;

use domain::Aggregate;
use eventstore::aggregate::CommandError;
use eventstore::repository::Snapshot;
use eventstore::{Appended, Loaded, Prefetched, Repository};
use uuid::Uuid;

use super::StreamState;
use crate::error::ApiError;

/// One stream changed by the batch: its state as loaded and as the batch
/// left it, and the events that lead from one to the other.
struct Staged<A: Aggregate> {
    loaded: Loaded<A::State>,
    current: A::State,
    pending: Vec<A::Event>,
}

/// A [`Staged`] of any aggregate type.
trait StagedStream: Send {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Remembers the committed-to-be state in the repository and returns a
    /// snapshot if one is due.
    fn finish(
        self: Box<Self>,
        repository: &Repository,
        stream_id: Uuid,
        appended: &Appended,
    ) -> Option<Snapshot>;
}

impl<A: Aggregate + 'static> StagedStream for Staged<A>
where
    A::Event: Send,
{
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn finish(
        self: Box<Self>,
        repository: &Repository,
        stream_id: Uuid,
        appended: &Appended,
    ) -> Option<Snapshot> {
        let Staged {
            loaded, pending, ..
        } = *self;
        let mut loaded = repository.record::<A>(stream_id, loaded, &pending, appended);
        repository.snapshot_due::<A>(stream_id, &mut loaded)
    }
}

/// The batch's view of every stream it loaded.
pub(crate) struct Staging<'a> {
    prefetched: &'a Prefetched,
    staged: HashMap<Uuid, Box<dyn StagedStream>>,
}

impl<'a> Staging<'a> {
    /// Staging over what the batch prefetched.
    pub(crate) fn new(prefetched: &'a Prefetched) -> Self {
        Self {
            prefetched,
            staged: HashMap::new(),
        }
    }

    /// Whether the batch changed `stream_id` so far.
    pub(crate) fn is_staged(&self, stream_id: Uuid) -> bool {
        self.staged.contains_key(&stream_id)
    }

    /// The stream's state as the batch left it so far.
    pub(crate) fn current<A: Aggregate + 'static>(
        &self,
        stream_id: Uuid,
    ) -> Result<StreamState<A::State>, ApiError>
    where
        A::Event: Send,
    {
        if let Some(staged) = self.staged.get(&stream_id) {
            let staged = staged
                .as_any()
                .downcast_ref::<Staged<A>>()
                .ok_or_else(|| foreign::<A>(stream_id))?;
            return Ok(StreamState {
                state: staged.current.clone(),
                version: staged.loaded.version + len(&staged.pending),
            });
        }
        let loaded = self.load::<A>(stream_id)?;
        Ok(StreamState {
            state: loaded.state,
            version: loaded.version,
        })
    }

    /// The stream's version and last position before the batch.
    pub(crate) fn base(&self, stream_id: Uuid) -> Option<(i64, i64)> {
        self.prefetched.point(stream_id)
    }

    /// Adds `events` (leading to `after`) to the stream's staged changes.
    pub(crate) fn stage<A: Aggregate + 'static>(
        &mut self,
        stream_id: Uuid,
        events: Vec<A::Event>,
        after: A::State,
    ) -> Result<(), ApiError>
    where
        A::Event: Send,
    {
        if !self.staged.contains_key(&stream_id) {
            let loaded = self.load::<A>(stream_id)?;
            let staged: Box<dyn StagedStream> = Box::new(Staged::<A> {
                current: loaded.state.clone(),
                loaded,
                pending: Vec::new(),
            });
            self.staged.insert(stream_id, staged);
        }
        let staged = self
            .staged
            .get_mut(&stream_id)
            .and_then(|s| s.as_any_mut().downcast_mut::<Staged<A>>())
            .ok_or_else(|| foreign::<A>(stream_id))?;
        staged.pending.extend(events);
        staged.current = after;
        Ok(())
    }

    /// Finishes the appended streams (cache, snapshots due) and returns the
    /// snapshots to write. Streams not in `appended` are dropped.
    pub(crate) fn finish(
        self,
        repository: &Repository,
        appended: &HashMap<Uuid, Appended>,
    ) -> Vec<Snapshot> {
        self.staged
            .into_iter()
            .filter_map(|(id, staged)| {
                let appended = appended.get(&id)?;
                staged.finish(repository, id, appended)
            })
            .collect()
    }

    fn load<A: Aggregate>(&self, stream_id: Uuid) -> Result<Loaded<A::State>, ApiError> {
        self.prefetched
            .load::<A>(stream_id)
            .map_err(|error| command_error(stream_id, error))
    }
}

fn len<T>(items: &[T]) -> i64 {
    i64::try_from(items.len()).expect("batch sizes fit in i64")
}

fn foreign<A: Aggregate>(stream_id: Uuid) -> ApiError {
    ApiError::Internal(format!(
        "stream {stream_id} was staged as another aggregate than {}",
        std::any::type_name::<A>()
    ))
}

/// The API error of a repository failure on `stream_id`.
pub(crate) fn command_error(stream_id: Uuid, error: CommandError) -> ApiError {
    match error {
        CommandError::WrongStreamType {
            stream_id,
            requested,
            actual,
        } => ApiError::ForeignStream {
            id: stream_id,
            expected: requested.to_owned(),
            actual,
        },
        CommandError::Read { source, .. } => {
            ApiError::database(format!("reading stream {stream_id}"), source)
        }
        CommandError::Append(error) => error.into(),
        error @ (CommandError::Decode { .. } | CommandError::NotPrefetched(_)) => {
            ApiError::Internal(format!("loading stream {stream_id}: {error}"))
        }
    }
}

/// What a command's decision may read besides its target: the streams it
/// listed in [`super::Command::reads`], as the batch left them so far.
pub struct View<'a> {
    staging: &'a Staging<'a>,
    depends_on: RefCell<Vec<Uuid>>,
}

impl<'a> View<'a> {
    pub(crate) fn new(staging: &'a Staging<'a>) -> Self {
        Self {
            staging,
            depends_on: RefCell::default(),
        }
    }

    /// The state of `stream_id` as an `A` (a stream of another type is
    /// [`ApiError::ForeignStream`]).
    pub fn load<A: Aggregate + 'static>(
        &self,
        stream_id: Uuid,
    ) -> Result<StreamState<A::State>, ApiError>
    where
        A::Event: Send,
    {
        if self.staging.is_staged(stream_id) {
            self.depends_on.borrow_mut().push(stream_id);
        }
        self.staging.current::<A>(stream_id)
    }

    /// The streams read that the batch had changed: if one of their appends
    /// fails, so must the decision that read them.
    pub(crate) fn into_dependencies(self) -> Vec<Uuid> {
        self.depends_on.into_inner()
    }
}
