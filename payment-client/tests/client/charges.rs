//! `charge`: captures, declines, and the retry paths with one idempotency key.

use std::time::Duration;

use payment_client::{BreakerState, ChargeStatus, PaymentError, PaymentProvider};
use payment_gateway::{ledger, Behaviour};

use crate::helpers::{charge_request, config, provider, slow, Simulator, SLOW, TRACEPARENT};

#[tokio::test]
async fn a_capture_returns_the_charge_in_one_request() {
    let simulator = Simulator::spawn(Behaviour::default()).await;
    let client = provider(config(&simulator.url()));
    let request = charge_request("tok_visa", 1999);

    let charge = client.charge(&request).await.expect("captured");
    assert_eq!(charge.status, ChargeStatus::Captured);
    assert_eq!(charge.amount_cents, 1999);
    assert_eq!(charge.currency, "EUR");
    assert_eq!(charge.reference, request.reference);
    assert!(charge.charge_id.starts_with("ch_"));

    let seen = simulator.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/charges");
    assert_eq!(
        seen[0].idempotency_key.as_ref(),
        Some(&request.idempotency_key)
    );
    assert_eq!(seen[0].traceparent.as_deref(), Some(TRACEPARENT));
    let ledger = simulator.ledger(request.reference).await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].charge_id, charge.charge_id);
}

#[tokio::test]
async fn a_decline_is_decoded_with_its_code_and_not_retried() {
    let simulator = Simulator::spawn(Behaviour::default()).await;
    let client = provider(config(&simulator.url()));
    let request = charge_request("tok_decline_insufficient_funds", 500);

    let error = client.charge(&request).await.expect_err("declined");
    assert!(
        matches!(&error, PaymentError::Declined { code, .. } if code == "insufficient_funds"),
        "{error:?}"
    );
    assert_eq!(simulator.seen().len(), 1, "a decline is final");
    assert_eq!(simulator.ledger(request.reference).await.len(), 1);
    assert_eq!(client.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn an_invalid_request_is_decoded_and_not_retried() {
    let simulator = Simulator::spawn(Behaviour::default()).await;
    let client = provider(config(&simulator.url()));
    let mut request = charge_request("tok_visa", 500);
    request.currency = "euro".into();

    let error = client.charge(&request).await.expect_err("refused");
    assert!(matches!(error, PaymentError::Invalid { .. }), "{error:?}");
    assert_eq!(simulator.seen().len(), 1);
}

#[tokio::test]
async fn a_flaky_provider_recovers_after_retries_with_one_charge() {
    let simulator = Simulator::spawn(Behaviour::default()).await;
    let client = provider(config(&simulator.url()));
    let request = charge_request("tok_flaky", 1200);

    let charge = client
        .charge(&request)
        .await
        .expect("third attempt succeeds");
    assert_eq!(charge.status, ChargeStatus::Captured);
    let seen = simulator.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|s| s.idempotency_key.as_ref() == Some(&request.idempotency_key)));
    assert_eq!(simulator.ledger(request.reference).await.len(), 1);
    assert_eq!(client.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_flaky_provider_is_unavailable_when_attempts_run_out() {
    let simulator = Simulator::spawn(Behaviour::default()).await;
    let client = provider(payment_client::ProviderConfig {
        max_attempts: 2,
        ..config(&simulator.url())
    });
    let request = charge_request("tok_flaky", 1200);

    let error = client.charge(&request).await.expect_err("two 503s");
    assert!(
        matches!(error, PaymentError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(simulator.ledger(request.reference).await.is_empty());
    // The next call with the same key gets through: the provider counts per key.
    client
        .charge(&request)
        .await
        .expect("third request succeeds");
}

#[tokio::test]
async fn a_slow_provider_times_out_after_all_attempts_but_charges_once() {
    let simulator = Simulator::spawn(slow()).await;
    let client = provider(config(&simulator.url()));
    let request = charge_request("tok_timeout", 800);

    let error = client.charge(&request).await.expect_err("timeout");
    assert_eq!(error, PaymentError::Timeout);
    let seen = simulator.seen();
    assert_eq!(seen.len(), 3, "max_attempts requests");
    assert!(seen
        .iter()
        .all(|s| s.idempotency_key.as_ref() == Some(&request.idempotency_key)));
    let ledger = simulator.ledger(request.reference).await;
    assert_eq!(ledger.len(), 1, "one charge despite three attempts");
    assert_eq!(ledger[0].status, ledger::ChargeStatus::Captured);
}

#[tokio::test]
async fn a_hanging_provider_times_out_and_charges_nothing() {
    let simulator = Simulator::spawn(slow()).await;
    let client = provider(config(&simulator.url()));
    let request = charge_request("tok_hang", 800);

    let error = client.charge(&request).await.expect_err("timeout");
    assert_eq!(error, PaymentError::Timeout);
    assert_eq!(simulator.seen().len(), 3);
    // The held requests end in 504 without recording anything.
    tokio::time::sleep(SLOW).await;
    assert!(simulator.ledger(request.reference).await.is_empty());
}

#[tokio::test]
async fn a_lost_request_answered_504_is_unavailable_and_charges_nothing() {
    let simulator = Simulator::spawn(Behaviour {
        slow_response: Duration::from_millis(50),
        ..Behaviour::default()
    })
    .await;
    let client = provider(config(&simulator.url()));
    let request = charge_request("tok_hang", 800);

    let error = client.charge(&request).await.expect_err("504");
    assert!(
        matches!(error, PaymentError::Unavailable { .. }),
        "{error:?}"
    );
    assert_eq!(simulator.seen().len(), 3);
    assert!(simulator.ledger(request.reference).await.is_empty());
}
