//! The effect runner: makes the provider calls the saga asks for, outside
//! any transaction, and records their outcomes.
//!
//! Due work is found in the database (`next_action_at`), so deadlines and
//! unfinished calls survive restarts. A saga is leased while its call runs,
//! so several workers never call twice at once; every call carries the same
//! idempotency key, so a repeated call never charges twice.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::aggregate::Payment;
use domain::saga::{Effect, SagaInput};
use eventstore::aggregate::execute;
use payment_client::PaymentProvider;
use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

pub mod outcome;

pub use outcome::Outcome;

use crate::execute::{Cause, ExecuteError};
use crate::handler::{self, Handler, HandlerError};
use crate::store::{self, SagaRow};

/// Tuning of the effect runner.
#[derive(Debug, Clone)]
pub struct EffectSettings {
    /// How often due work is looked for (appends also wake the runner).
    pub tick: Duration,
    /// Provider calls in flight at once (and sagas claimed per round).
    pub batch: i64,
    /// How long a claimed saga is skipped by other runners.
    pub lease: Duration,
    /// First retry delay after an unanswered call.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl Default for EffectSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(250),
            batch: 32,
            lease: Duration::from_secs(60),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Runs the sagas' provider calls.
#[derive(Clone)]
pub struct EffectRunner {
    pool: PgPool,
    handler: Arc<Handler>,
    provider: Arc<dyn PaymentProvider>,
    settings: EffectSettings,
    wake: Arc<Notify>,
    /// One permit per call in flight; a slow call never holds up the others.
    in_flight: Arc<Semaphore>,
}

impl EffectRunner {
    /// A runner calling `provider`.
    pub fn new(
        pool: PgPool,
        handler: Arc<Handler>,
        provider: Arc<dyn PaymentProvider>,
        settings: EffectSettings,
    ) -> Self {
        Self {
            pool,
            handler,
            provider,
            in_flight: Arc::new(Semaphore::new(
                usize::try_from(settings.batch).unwrap_or(1).max(1),
            )),
            settings,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Notifying it makes the runner look for work at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!("effect runner started");
        // Owned here, so stopping (or aborting) the runner stops its calls.
        let mut calls = JoinSet::new();
        while !shutdown.is_cancelled() {
            while calls.try_join_next().is_some() {}
            match self.run_due(&mut calls).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "effect round failed; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(self.settings.tick) => {}
                () = self.wake.notified() => {}
            }
        }
        tracing::info!("effect runner stopped");
    }

    /// Claims sagas with due work, as many as there are free call slots,
    /// and runs each in its own task in `calls`. Returns how many were claimed.
    pub async fn run_due(&self, calls: &mut JoinSet<()>) -> Result<usize, HandlerError> {
        let free = self.in_flight.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let mut conn = self.pool.acquire().await?;
        let lease = chrono::Duration::from_std(self.settings.lease)
            .unwrap_or(chrono::Duration::seconds(60));
        let limit = i64::try_from(free).unwrap_or(i64::MAX);
        let due = store::claim_due(&mut conn, limit, lease).await?;
        drop(conn);
        let count = due.len();
        for order_id in due {
            let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                break;
            };
            let runner = self.clone();
            calls.spawn(async move {
                if let Err(error) = runner.process(order_id).await {
                    tracing::warn!(%order_id, %error, "saga effect failed; will retry");
                    let _ = runner
                        .reschedule(order_id, runner.settings.backoff_max)
                        .await;
                }
                drop(permit);
                // A slot is free: look for more work.
                runner.wake.notify_one();
            });
        }
        Ok(count)
    }

    /// Checks the saga's deadline, then makes its pending call, if any.
    #[tracing::instrument(skip(self), fields(correlation_id, trace_id))]
    async fn process(&self, order_id: Uuid) -> Result<(), HandlerError> {
        let policy = self.handler.policy();
        let mut tx = self.pool.begin().await?;
        let Some(row) = store::lock(&mut tx, order_id).await? else {
            return Ok(());
        };
        let span = tracing::Span::current();
        span.record(
            "correlation_id",
            tracing::field::display(row.correlation_id),
        );
        if let Some(trace_id) = eventstore::trace::trace_id(row.traceparent.as_deref()) {
            span.record("trace_id", trace_id);
        }
        let now = Utc::now();
        handler::apply(
            &mut tx,
            order_id,
            SagaInput::Tick,
            &cause_of(&row),
            now,
            policy,
        )
        .await?;
        let row = store::lock(&mut tx, order_id).await?.unwrap_or(row);
        let Some(effect) = row.saga.effect.clone() else {
            store::save(&mut tx, &row, crate::steps::schedule(&row.saga, now)).await?;
            tx.commit().await?;
            return Ok(());
        };
        tx.commit().await?;

        let span = effect_span(&row, &effect);
        async {
            let outcome = self.call(&row, &effect).await;
            let mut attempt = 1;
            loop {
                match self.record(order_id, outcome.clone()).await {
                    Err(HandlerError::Execute(error)) if error.is_conflict() && attempt < 10 => {
                        tracing::debug!(%error, attempt, "lost a race recording the outcome; retrying");
                        attempt += 1;
                    }
                    result => return result,
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Records a call's outcome: the payment stream and the saga, in one
    /// transaction.
    async fn record(&self, order_id: Uuid, outcome: Outcome) -> Result<(), HandlerError> {
        let policy = self.handler.policy();
        let mut tx = self.pool.begin().await?;
        let Some(row) = store::lock(&mut tx, order_id).await? else {
            return Ok(());
        };
        let cause = cause_of(&row);
        match outcome {
            Outcome::Record(command, input) => {
                tracing::info!(%order_id, ?command, "payment outcome");
                execute::<Payment>(&mut tx, row.saga.payment_id(), command, &cause.metadata())
                    .await
                    .map_err(ExecuteError::from)?
                    .map_err(|refusal| ExecuteError::Refused {
                        action: "recording the payment outcome".into(),
                        message: refusal.to_string(),
                    })?;
                handler::apply(&mut tx, order_id, input, &cause, Utc::now(), policy).await?;
            }
            Outcome::Retry(input, delay) => {
                if let Some(input) = input {
                    handler::apply(&mut tx, order_id, input, &cause, Utc::now(), policy).await?;
                }
                let mut row = store::lock(&mut tx, order_id).await?.unwrap_or(row);
                row.effect_attempts += 1;
                let next = outcome::retry_at(
                    &self.settings,
                    Utc::now(),
                    delay,
                    row.effect_attempts,
                    row.saga.deadline,
                );
                store::save(&mut tx, &row, Some(next)).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn call(&self, row: &SagaRow, effect: &Effect) -> Outcome {
        let saga = &row.saga;
        let traceparent = row.traceparent.as_deref();
        let policy = self.handler.policy();
        match effect {
            Effect::Charge => {
                let request =
                    outcome::charge_request(saga, &policy.currency, row.traceparent.clone());
                outcome::charge_outcome(self.provider.charge(&request).await)
            }
            Effect::Resolve => {
                let answer = self
                    .provider
                    .charges_for_reference(saga.order_id, traceparent)
                    .await;
                outcome::resolve_outcome(saga, policy, answer)
            }
            Effect::Refund { charge_id } => {
                let key = outcome::refund_key(saga);
                let answer = self.provider.refund(charge_id, &key, traceparent).await;
                outcome::refund_outcome(charge_id, answer)
            }
        }
    }

    async fn reschedule(&self, order_id: Uuid, delay: Duration) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE saga.order_sagas SET next_action_at = now() + $2 WHERE order_id = $1")
            .bind(order_id)
            .bind(chrono::Duration::from_std(delay).unwrap_or_default())
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}

/// The span of a saga's provider call and the recording of its outcome: in
/// the trace of the request that placed the order when spans are exported
/// (the call's client spans, the gateway's server span and the append of
/// the outcome are its children).
fn effect_span(row: &SagaRow, effect: &Effect) -> tracing::Span {
    let span = tracing::info_span!(
        "payment",
        order_id = %row.saga.order_id,
        effect = ?effect,
    );
    platform::otel::set_parent(&span, row.traceparent.as_deref());
    span
}

/// The cause named by what a saga's effect appends: the event that asked
/// for the effect.
pub fn cause_of(row: &SagaRow) -> Cause {
    Cause {
        event_id: row.effect_cause.unwrap_or(row.correlation_id),
        correlation_id: row.correlation_id,
        traceparent: row.traceparent.clone(),
    }
}
