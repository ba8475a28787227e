//! The payment client's metrics, recorded into the process's recorder (the
//! saga worker serves them on its admin port).

use std::time::Duration;

use crate::breaker::BreakerState;
use crate::error::PaymentError;

/// `payment_calls_total{operation, outcome}` and
/// `payment_call_duration_seconds{operation, outcome}` for one whole call
/// (its retries included); `outcome` is `ok` or [`PaymentError::kind`].
pub(crate) fn record_call<T>(
    operation: &'static str,
    result: &Result<T, PaymentError>,
    took: Duration,
) {
    describe();
    let outcome = result.as_ref().map_or_else(PaymentError::kind, |_| "ok");
    metrics::counter!("payment_calls_total", "operation" => operation, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("payment_call_duration_seconds", "operation" => operation, "outcome" => outcome)
        .record(took.as_secs_f64());
}

/// `payment_retries_total{operation}`: one attempt failed transiently and is retried.
pub(crate) fn record_retry(operation: &'static str) {
    metrics::counter!("payment_retries_total", "operation" => operation).increment(1);
}

/// `payment_breaker_state`: 0 closed, 1 half-open, 2 open.
pub(crate) fn record_breaker(state: BreakerState) {
    let value = match state {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
    };
    metrics::gauge!("payment_breaker_state").set(value);
}

fn describe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
        describe_counter!(
            "payment_calls_total",
            "Calls to the payment provider, by operation and final outcome."
        );
        describe_histogram!(
            "payment_call_duration_seconds",
            Unit::Seconds,
            "Time of a whole provider call, retries included."
        );
        describe_counter!(
            "payment_retries_total",
            "Provider attempts retried after a transient failure."
        );
        describe_gauge!(
            "payment_breaker_state",
            "The payment circuit breaker: 0 closed, 1 half-open, 2 open."
        );
    });
}
