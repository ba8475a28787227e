//! A queued command, type-erased so that commands on streams of any
//! aggregate share one batch.

use std::any::Any;

use axum::http::StatusCode;
use domain::{Aggregate, DomainEvent};
use eventstore::{LoadRequest, NewEvent};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::staged::{Staging, View};
use super::{Command, CommandContext, Reply, StreamState};
use crate::error::ApiError;

/// What a command decided in its batch.
pub(crate) struct Decided {
    /// Events for the target stream (none: the command changes nothing).
    pub events: Vec<NewEvent>,
    /// The target's version after the command.
    pub version_after: i64,
    /// Streams the batch had changed that the decision read.
    pub depends_on: Vec<Uuid>,
    /// The target's state after the command, for [`Job::reply`].
    pub after: Box<dyn Any + Send>,
}

/// A command waiting in a writer's queue, with its caller's answer channel.
pub(crate) trait Job: Send + Sync {
    /// The stream it appends to.
    fn stream_id(&self) -> Uuid;
    /// That stream's type.
    fn stream_type(&self) -> &'static str;
    /// The streams to load for it: the target first.
    fn loads(&self) -> Vec<LoadRequest>;
    /// Its request context.
    fn context(&self) -> &CommandContext;
    /// 1 for the first attempt.
    fn attempt(&self) -> u32;
    /// Counts another attempt.
    fn retry(&mut self);
    /// Decides against the batch's states and stages its events.
    fn decide(&self, staging: &mut Staging<'_>) -> Result<Decided, ApiError>;
    /// The success reply, once the target is at `version` with its last
    /// event at `position`.
    fn reply(
        &self,
        after: Box<dyn Any + Send>,
        version: i64,
        position: i64,
    ) -> Result<Reply, ApiError>;
    /// A reply recorded under the job's idempotency key.
    fn replay(&self, status: StatusCode, body: serde_json::Value) -> Reply;
    /// A refusal recorded under the job's idempotency key.
    fn problem(&self, status: StatusCode, body: serde_json::Value) -> Reply {
        Reply::problem(status, body)
    }
    /// Answers the caller.
    fn answer(self: Box<Self>, outcome: Result<Reply, ApiError>);
}

/// A [`Command`] as a [`Job`].
pub(crate) struct Pending<C> {
    pub command: C,
    pub context: CommandContext,
    pub attempt: u32,
    pub caller: oneshot::Sender<Result<Reply, ApiError>>,
}

impl<C: Command> Job for Pending<C>
where
    <C::Aggregate as Aggregate>::Event: Send,
    C::Aggregate: 'static,
{
    fn stream_id(&self) -> Uuid {
        self.command.stream_id()
    }

    fn stream_type(&self) -> &'static str {
        <<C::Aggregate as Aggregate>::Event as DomainEvent>::STREAM_TYPE
    }

    fn loads(&self) -> Vec<LoadRequest> {
        let mut loads = vec![LoadRequest::of::<C::Aggregate>(self.command.stream_id())];
        loads.extend(self.command.reads());
        loads
    }

    fn context(&self) -> &CommandContext {
        &self.context
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn retry(&mut self) {
        self.attempt += 1;
    }

    fn decide(&self, staging: &mut Staging<'_>) -> Result<Decided, ApiError> {
        let stream_id = self.command.stream_id();
        let target = match staging.current::<C::Aggregate>(stream_id) {
            // An id of another kind of stream is, for a command that needs
            // its own kind to exist, simply not found.
            Err(foreign @ ApiError::ForeignStream { .. }) => {
                let absent = StreamState {
                    state: Default::default(),
                    version: 0,
                };
                self.command.require(&absent)?;
                return Err(foreign);
            }
            other => other?,
        };
        self.command.require(&target)?;
        if let Some(expected) = self.context.if_match {
            if expected != target.version {
                return Err(ApiError::VersionMismatch {
                    stream_id,
                    expected,
                    actual: target.version,
                });
            }
        }
        let view = View::new(staging);
        let events = self.command.decide(&target, &view)?;
        let depends_on = view.into_dependencies();
        let new_events: Vec<NewEvent> = events.iter().map(NewEvent::from_domain).collect();
        let version_after =
            target.version + i64::try_from(events.len()).expect("event counts fit in i64");
        let after = events.iter().fold(target.state, C::Aggregate::evolve);
        if !events.is_empty() {
            staging.stage::<C::Aggregate>(stream_id, events, after.clone())?;
        }
        Ok(Decided {
            events: new_events,
            version_after,
            depends_on,
            after: Box::new(after),
        })
    }

    fn reply(
        &self,
        after: Box<dyn Any + Send>,
        version: i64,
        position: i64,
    ) -> Result<Reply, ApiError> {
        let after = after
            .downcast::<<C::Aggregate as Aggregate>::State>()
            .map_err(|_| ApiError::Internal("a decision's state has another type".into()))?;
        let body = self.command.respond(&after, version, position);
        let body = serde_json::to_value(body)
            .map_err(|error| ApiError::Internal(format!("serializing a response: {error}")))?;
        Ok(Reply::success::<C>(body))
    }

    fn replay(&self, status: StatusCode, body: serde_json::Value) -> Reply {
        Reply::replay::<C>(status, body)
    }

    fn answer(self: Box<Self>, outcome: Result<Reply, ApiError>) {
        // The caller may have gone away (client disconnected): nothing to do.
        let _ = self.caller.send(outcome);
    }
}
