//! The command path shared by every endpoint: group commit.
//!
//! A handler turns its request into a [`Command`] and calls [`execute`],
//! which queues it for one of a few writers ([`writer`]). Each writer owns
//! the streams whose id hashes to it, so two writers never race for a
//! stream. A writer takes everything queued (up to a batch limit) and runs
//! it in ONE transaction ([`batch`]):
//!
//! 1. claim the batch's `Idempotency-Key`s and look up recorded responses;
//! 2. load every stream the batch touches in one or two round trips
//!    (cached state checked against the log, snapshots, see
//!    [`eventstore::Repository`]);
//! 3. decide each command in order with the pure domain, against the state
//!    the commands before it in the batch left (so two commands on one
//!    stream are ordered, not conflicting); a refusal fails that command
//!    alone;
//! 4. append every stream's events in one statement; a stream another
//!    process moved meanwhile fails alone, and its commands are retried in
//!    the next batch (or answered 412 under `If-Match`);
//! 5. record the idempotency responses and due snapshots, commit once, and
//!    only then answer each caller.

pub mod batch;
mod job;
pub mod reply;
mod staged;
pub mod writer;

use axum::http::StatusCode;
use domain::Aggregate;
use eventstore::{LoadRequest, Metadata};
use serde::Serialize;
use uuid::Uuid;

pub use reply::Reply;
pub use staged::View;

use crate::error::ApiError;
use crate::idempotency::IdempotencyRequest;
use crate::state::AppState;

/// Everything about a request that is not the command itself.
#[derive(Debug, Clone)]
pub struct CommandContext {
    /// The version the client expects the target stream at (`If-Match`).
    pub if_match: Option<i64>,
    /// Metadata of every event the command appends.
    pub metadata: Metadata,
    /// The `Idempotency-Key` and request fingerprint, if a key was sent.
    pub idempotency: Option<IdempotencyRequest>,
    /// The command's `append` span while spans are exported (`None`
    /// otherwise; set by [`execute`]): the group-commit batch that commits
    /// the command links to it.
    pub origin: Option<tracing::Span>,
}

impl CommandContext {
    /// Context of command `command_id`: its events get it as correlation and
    /// causation id, plus the trace context and idempotency key.
    pub fn new(
        command_id: Uuid,
        if_match: Option<i64>,
        traceparent: Option<String>,
        idempotency: Option<IdempotencyRequest>,
    ) -> Self {
        let mut metadata = Metadata::for_command(command_id);
        metadata.traceparent = traceparent;
        metadata.idempotency_key = idempotency.as_ref().map(|i| i.key.clone());
        Self {
            if_match,
            metadata,
            idempotency,
            origin: None,
        }
    }
}

/// A stream's state as a command sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamState<S> {
    /// The state after every event so far.
    pub state: S,
    /// The stream's version (0: no events).
    pub version: i64,
}

/// A command an endpoint runs through [`execute`]: it appends to one stream
/// of aggregate [`Command::Aggregate`] and may read others.
pub trait Command: Send + Sync + 'static {
    /// The aggregate whose stream the command appends to.
    type Aggregate: Aggregate;

    /// The success body.
    type Response: Serialize + Send;

    /// Status of a successful response (201 for creations, else 200).
    const SUCCESS: StatusCode;

    /// The stream the command appends to.
    fn stream_id(&self) -> Uuid;

    /// Other streams the decision reads (loaded with the batch).
    fn reads(&self) -> Vec<LoadRequest> {
        Vec::new()
    }

    /// The `Location` of a success body (also for replays of a recorded one).
    fn location(_body: &serde_json::Value) -> Option<String> {
        None
    }

    /// Checked before `If-Match`: e.g. 404 for a stream that must exist.
    fn require(&self, _target: &StreamState<AggregateState<Self>>) -> Result<(), ApiError> {
        Ok(())
    }

    /// Decides with the pure domain: the events to append to the target
    /// stream (none: nothing changes). `view` reads the [`Command::reads`].
    fn decide(
        &self,
        target: &StreamState<AggregateState<Self>>,
        view: &View<'_>,
    ) -> Result<Vec<AggregateEvent<Self>>, ApiError>;

    /// The success body, given the target's state after the command, its
    /// version and the global position of its last event.
    fn respond(&self, after: &AggregateState<Self>, version: i64, position: i64) -> Self::Response;
}

/// The state type of a command's aggregate.
pub type AggregateState<C> = <<C as Command>::Aggregate as Aggregate>::State;
/// The event type of a command's aggregate.
pub type AggregateEvent<C> = <<C as Command>::Aggregate as Aggregate>::Event;

/// Runs `command` through the group-commit writer of its stream and
/// returns its reply once its batch committed (the `append` span: queueing
/// and the batch's transaction, which links back to it).
#[tracing::instrument(name = "append", skip_all, fields(stream_id = %command.stream_id()))]
pub async fn execute<C: Command>(
    state: &AppState,
    mut context: CommandContext,
    command: C,
) -> Result<Reply, ApiError> {
    context.origin = platform::otel::enabled().then(tracing::Span::current);
    state.writers.submit(command, context).await
}
