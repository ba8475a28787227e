//! The command loop shared by every endpoint.
//!
//! One transaction per attempt: claim the `Idempotency-Key` (if any) →
//! load the stream → decide (pure domain) → append with
//! `ExpectedVersion::Exact(loaded version)` → record the response under the
//! key → commit. A lost optimistic race is retried (see [`retry`]) unless
//! the client sent `If-Match`, which turns it into 412.

pub mod load;
pub mod reply;
pub mod retry;

use std::future::Future;

use axum::http::StatusCode;
use domain::DomainEvent;
use eventstore::{Appended, ExpectedVersion, Metadata, NewEvent};
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

pub use reply::Reply;

use crate::error::{ApiError, DbContext};
use crate::idempotency::{self, Claim, IdempotencyRequest};
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
        }
    }
}

/// One attempt at running a command, handed to [`Command::attempt`].
#[derive(Debug)]
pub struct Attempt<'a> {
    /// 1 for the first attempt.
    pub number: u32,
    context: &'a CommandContext,
}

impl Attempt<'_> {
    /// Whether to load the target stream under its row lock (every retry does).
    pub fn lock_stream(&self) -> bool {
        self.number > 1
    }

    /// Checks `If-Match` against the loaded version of the target stream.
    pub fn check_if_match(&self, stream_id: Uuid, loaded_version: i64) -> Result<(), ApiError> {
        match self.context.if_match {
            Some(expected) if expected != loaded_version => Err(ApiError::VersionMismatch {
                stream_id,
                expected,
                actual: loaded_version,
            }),
            _ => Ok(()),
        }
    }

    /// Appends `events` to the stream expecting it still at `loaded_version`,
    /// with the request's metadata.
    pub async fn append<E: DomainEvent>(
        &self,
        conn: &mut PgConnection,
        stream_id: Uuid,
        loaded_version: i64,
        events: &[E],
    ) -> Result<Appended, ApiError> {
        let events: Vec<NewEvent> = events.iter().map(NewEvent::from_domain).collect();
        Ok(eventstore::append(
            conn,
            E::STREAM_TYPE,
            stream_id,
            ExpectedVersion::Exact(loaded_version),
            &events,
            &self.context.metadata,
        )
        .await?)
    }
}

/// A command an endpoint runs through [`execute`].
pub trait Command: Send + Sync {
    /// The success body.
    type Response: Serialize + Send;

    /// Status of a successful response (201 for creations, else 200).
    const SUCCESS: StatusCode;

    /// The stream the command appends to.
    fn stream_id(&self) -> Uuid;

    /// The `Location` of a success body (also for replays of a recorded one).
    fn location(_body: &serde_json::Value) -> Option<String> {
        None
    }

    /// One attempt inside the caller's transaction: load, check `If-Match`
    /// ([`Attempt::check_if_match`]), decide, append ([`Attempt::append`]).
    fn attempt(
        &self,
        conn: &mut PgConnection,
        attempt: &Attempt<'_>,
    ) -> impl Future<Output = Result<Self::Response, ApiError>> + Send;
}

/// Runs `command`, retrying lost optimistic races up to the state's policy.
#[tracing::instrument(skip_all, fields(stream_id = %command.stream_id()))]
pub async fn execute<C: Command>(
    state: &AppState,
    context: &CommandContext,
    command: &C,
) -> Result<Reply, ApiError> {
    let mut number = 1;
    loop {
        let attempt = Attempt { number, context };
        match run_attempt(state, command, &attempt).await {
            Err(error) if error.is_retryable() => {
                if !state.retry.may_retry(number) {
                    tracing::warn!(%error, attempts = number, "giving up after repeated conflicts");
                    return Err(ApiError::RetriesExhausted {
                        stream_id: command.stream_id(),
                        attempts: number,
                    });
                }
                let pause = state.retry.backoff(number);
                tracing::debug!(%error, attempt = number, ?pause, "conflict; retrying");
                tokio::time::sleep(pause).await;
                number += 1;
            }
            outcome => return outcome,
        }
    }
}

/// One transaction: idempotency claim, the command, the record, the commit.
async fn run_attempt<C: Command>(
    state: &AppState,
    command: &C,
    attempt: &Attempt<'_>,
) -> Result<Reply, ApiError> {
    let mut tx = state
        .pool
        .begin()
        .await
        .during(|| "starting a transaction".into())?;
    let Some(request) = &attempt.context.idempotency else {
        let response = run_command(command, &mut tx, attempt).await?;
        tx.commit()
            .await
            .during(|| "committing the command".into())?;
        return Ok(Reply::success::<C>(to_json(&response)?));
    };

    match idempotency::claim(&mut tx, &request.key).await? {
        Claim::InFlight => return Err(ApiError::IdempotencyKeyInFlight),
        Claim::Recorded(stored) if stored.request_hash != request.fingerprint => {
            return Err(ApiError::IdempotencyKeyReused)
        }
        Claim::Recorded(stored) => {
            tracing::debug!(
                status = stored.response_status,
                "replaying a recorded response"
            );
            return Ok(Reply::replay::<C>(stored.status(), stored.response_body));
        }
        Claim::Fresh => {}
    }

    // The command runs in a savepoint, so a refusal can be rolled back and
    // still be recorded under the key in the same transaction.
    let mut savepoint = Connection::begin(&mut *tx)
        .await
        .during(|| "starting a savepoint".into())?;
    let (status, body) = match run_command(command, &mut savepoint, attempt).await {
        Ok(response) => {
            savepoint
                .commit()
                .await
                .during(|| "releasing the savepoint".into())?;
            (C::SUCCESS, to_json(&response)?)
        }
        Err(error) if error.is_recordable() => {
            savepoint
                .rollback()
                .await
                .during(|| "rolling back the savepoint".into())?;
            tracing::debug!(%error, "command refused; recording the refusal");
            let problem = error.problem();
            (problem.status_code(), to_json(&problem)?)
        }
        Err(error) => return Err(error),
    };
    let stored = idempotency::record(&mut tx, request, status, &body).await?;
    tx.commit()
        .await
        .during(|| "committing the command".into())?;
    Ok(if status == C::SUCCESS {
        Reply::success::<C>(stored)
    } else {
        Reply::problem(status, stored)
    })
}

/// Runs one attempt of the command; a lost race under `If-Match` is 412.
async fn run_command<C: Command>(
    command: &C,
    conn: &mut PgConnection,
    attempt: &Attempt<'_>,
) -> Result<C::Response, ApiError> {
    command
        .attempt(conn, attempt)
        .await
        .map_err(|error| match (error, attempt.context.if_match) {
            (ApiError::Conflict { stream_id, actual }, Some(expected)) => {
                ApiError::VersionMismatch {
                    stream_id,
                    expected,
                    actual,
                }
            }
            (error, _) => error,
        })
}

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value)
        .map_err(|error| ApiError::Internal(format!("serializing a response: {error}")))
}
