//! [`PaymentProvider`] over HTTP with timeouts, retries and a circuit breaker.

use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use reqwest::{RequestBuilder, Url};
use serde::de::DeserializeOwned;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::breaker::{BreakerState, CircuitBreaker, Clock, SystemClock};
use crate::config::ProviderConfig;
use crate::decode;
use crate::error::PaymentError;
use crate::model::{Charge, ChargeBody, ChargeList, ChargeRequest};
use crate::provider::PaymentProvider;

/// The header carrying the idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// The W3C trace context header.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The provider's HTTP API. Each attempt passes the circuit breaker first;
/// transient failures (`Unavailable`, `Timeout`) are retried up to
/// `max_attempts` with jittered exponential backoff and the same request
/// (hence the same `Idempotency-Key`); other errors return at once.
#[derive(Debug)]
pub struct HttpPaymentProvider {
    client: reqwest::Client,
    base_url: Url,
    max_attempts: u32,
    backoff: Backoff,
    breaker: CircuitBreaker,
}

impl HttpPaymentProvider {
    /// A client for `config`; fails on an unusable URL.
    pub fn new(config: ProviderConfig) -> anyhow::Result<Self> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// As [`new`](Self::new), with the breaker reading time from `clock`.
    pub fn with_clock(config: ProviderConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let base_url = Url::parse(&config.gateway_url)
            .with_context(|| format!("invalid payment gateway URL `{}`", config.gateway_url))?;
        anyhow::ensure!(
            !base_url.cannot_be_a_base(),
            "invalid payment gateway URL `{}`",
            config.gateway_url
        );
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout())
            .timeout(config.request_timeout())
            .build()
            .context("building the payment HTTP client")?;
        Ok(Self {
            client,
            base_url,
            max_attempts: config.max_attempts.max(1),
            backoff: config.backoff(),
            breaker: CircuitBreaker::new(config.breaker(), clock),
        })
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// The base URL with `segments` appended (each one percent-encoded).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .expect("checked at construction: the URL can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// Runs the request `build` makes, with the breaker and the retries.
    ///
    /// If any attempt timed out, a failure of the whole call is reported as
    /// [`PaymentError::Timeout`] even when a later attempt failed otherwise
    /// (e.g. the breaker opened): the provider may have acted on the
    /// request, and the caller must know its outcome is unknown.
    async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<T, PaymentError> {
        let started = std::time::Instant::now();
        let result = self.attempts(operation, build).await;
        crate::metrics::record_call(operation, &result, started.elapsed());
        crate::metrics::record_breaker(self.breaker.state());
        result
    }

    /// The attempts of one [`call`](Self::call).
    async fn attempts<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<T, PaymentError> {
        let mut attempt = 1;
        let mut timed_out = false;
        loop {
            let admitted = if attempt == 1 {
                self.breaker.try_acquire()
            } else {
                self.breaker.try_acquire_retry()
            };
            if let Err(retry_after) = admitted {
                tracing::debug!(?retry_after, "payment provider circuit open; not calling");
                if attempt > 1 {
                    // The call failed and may not be retried: it ends here.
                    self.breaker.record_failure();
                }
                if timed_out {
                    return Err(PaymentError::Timeout);
                }
                return Err(PaymentError::CircuitOpen { retry_after });
            }
            let span =
                tracing::info_span!("http_request", otel.kind = "client", operation, attempt);
            // Built inside the attempt's span, so it sends that span's traceparent.
            let result = send(span.in_scope(&build)).instrument(span).await;
            timed_out |= matches!(result, Err(PaymentError::Timeout));
            match result {
                Err(error) if error.is_retryable() && attempt < self.max_attempts => {
                    let delay = self.backoff.delay(attempt);
                    tracing::warn!(
                        attempt,
                        %error,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "payment provider call failed; retrying"
                    );
                    crate::metrics::record_retry(operation);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                // The breaker counts calls, not attempts: the retries of a
                // request the provider keeps failing (a card it holds) say
                // the same thing again, and would outweigh every other call.
                Err(error) if error.is_retryable() => {
                    self.breaker.record_failure();
                    return Err(if timed_out {
                        PaymentError::Timeout
                    } else {
                        error
                    });
                }
                answered => {
                    self.breaker.record_success();
                    return answered;
                }
            }
        }
    }
}

/// Sends one attempt and decodes its answer.
async fn send<T: DeserializeOwned>(request: RequestBuilder) -> Result<T, PaymentError> {
    let response = request
        .send()
        .await
        .map_err(|error| decode::transport_error(&error))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|error| decode::transport_error(&error))?;
    if status.is_success() {
        decode::decode_success(&body)
    } else {
        Err(decode::decode_error(status, &body))
    }
}

/// Adds the `traceparent` header: the current span's while spans are
/// exported (the provider's spans become its children), else the caller's
/// `traceparent`, if any.
fn traced(request: RequestBuilder, traceparent: Option<&str>) -> RequestBuilder {
    let current = platform::otel::current_traceparent();
    match current.as_deref().or(traceparent) {
        Some(value) => request.header(TRACEPARENT_HEADER, value),
        None => request,
    }
}

#[async_trait]
impl PaymentProvider for HttpPaymentProvider {
    #[tracing::instrument(
        skip(self, request),
        fields(reference = %request.reference, idempotency_key = %request.idempotency_key)
    )]
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, PaymentError> {
        let url = self.url(&["charges"]);
        let body = ChargeBody::from(request);
        self.call("charge", || {
            let post = self
                .client
                .post(url.clone())
                .header(IDEMPOTENCY_KEY_HEADER, &request.idempotency_key)
                .json(&body);
            traced(post, request.traceparent.as_deref())
        })
        .await
    }

    #[tracing::instrument(skip(self, traceparent))]
    async fn charges_for_reference(
        &self,
        reference: Uuid,
        traceparent: Option<&str>,
    ) -> Result<Vec<Charge>, PaymentError> {
        let mut url = self.url(&["charges"]);
        url.query_pairs_mut()
            .append_pair("reference", &reference.to_string());
        let list: ChargeList = self
            .call("lookup", || {
                traced(self.client.get(url.clone()), traceparent)
            })
            .await?;
        Ok(list.charges)
    }

    #[tracing::instrument(skip(self, traceparent))]
    async fn refund(
        &self,
        charge_id: &str,
        idempotency_key: &str,
        traceparent: Option<&str>,
    ) -> Result<Charge, PaymentError> {
        let url = self.url(&["charges", charge_id, "refund"]);
        self.call("refund", || {
            let post = self
                .client
                .post(url.clone())
                .header(IDEMPOTENCY_KEY_HEADER, idempotency_key);
            traced(post, traceparent)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_joined_and_encoded() {
        for base in ["http://127.0.0.1:8082", "http://127.0.0.1:8082/"] {
            let provider = HttpPaymentProvider::new(ProviderConfig::new(base)).unwrap();
            assert_eq!(
                provider.url(&["charges", "ch_1/x", "refund"]).as_str(),
                "http://127.0.0.1:8082/charges/ch_1%2Fx/refund"
            );
        }
        let prefixed = HttpPaymentProvider::new(ProviderConfig::new("http://h/psp")).unwrap();
        assert_eq!(prefixed.url(&["charges"]).as_str(), "http://h/psp/charges");
    }

    #[test]
    fn unusable_urls_are_refused() {
        for bad in ["", "not a url", "mailto:someone@example.com"] {
            assert!(
                HttpPaymentProvider::new(ProviderConfig::new(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_new_provider_has_a_closed_breaker() {
        let provider = HttpPaymentProvider::new(ProviderConfig::default()).unwrap();
        assert_eq!(provider.breaker_state(), BreakerState::Closed);
    }
}
