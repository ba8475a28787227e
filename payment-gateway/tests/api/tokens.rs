//! Test-card behaviours chosen by the token.

use std::time::{Duration, Instant};

use payment_gateway::ledger::ChargeStatus;
use payment_gateway::Behaviour;

use crate::helpers::{charge_body, impatient_client, new_key, Reply, TestGateway};

const SLOW: Duration = Duration::from_millis(1000);
const CLIENT_TIMEOUT: Duration = Duration::from_millis(300);

fn slow_behaviour() -> Behaviour {
    Behaviour {
        slow_response: SLOW,
        ..Behaviour::default()
    }
}

#[tokio::test]
async fn a_decline_token_is_402_with_card_declined_and_recorded() {
    let gateway = TestGateway::spawn().await;
    let reply = gateway
        .charge(&new_key(), &charge_body("tok_decline", 500))
        .await;
    let problem = reply.assert_problem(402);
    assert_eq!(problem["decline_code"], "card_declined");
    let ledger = gateway.ledger().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].status, ChargeStatus::Declined);
    assert_eq!(ledger[0].decline_code.as_deref(), Some("card_declined"));
    assert_eq!(problem["charge_id"], ledger[0].charge_id);
}

#[tokio::test]
async fn a_decline_token_suffix_is_the_decline_code() {
    let gateway = TestGateway::spawn().await;
    for code in ["insufficient_funds", "expired_card", "do_not_honor"] {
        let token = format!("tok_decline_{code}");
        let reply = gateway.charge(&new_key(), &charge_body(&token, 500)).await;
        assert_eq!(reply.assert_problem(402)["decline_code"], code);
    }
}

#[tokio::test]
async fn a_timeout_token_captures_at_once_but_answers_after_the_client_gave_up() {
    let gateway = TestGateway::spawn_with(slow_behaviour()).await;
    let key = new_key();
    let body = charge_body("tok_timeout", 700);
    let client = impatient_client(CLIENT_TIMEOUT);
    let error = gateway
        .charge_request(&client, Some(&key), &body)
        .send()
        .await
        .expect_err("the client times out");
    assert!(error.is_timeout(), "{error}");

    let ledger = gateway.ledger().await;
    assert_eq!(ledger.len(), 1, "recorded before the slow answer");
    assert_eq!(ledger[0].status, ChargeStatus::Captured);

    // A patient replay gets the captured charge, as slowly.
    let started = Instant::now();
    let reply = gateway.charge(&key, &body).await;
    assert!(started.elapsed() >= SLOW);
    assert_eq!(reply.assert_json(201)["charge_id"], ledger[0].charge_id);
    assert_eq!(gateway.ledger().await.len(), 1);
}

#[tokio::test]
async fn a_hang_token_times_out_and_records_nothing() {
    let gateway = TestGateway::spawn_with(slow_behaviour()).await;
    let key = new_key();
    let body = charge_body("tok_hang", 700);
    let client = impatient_client(CLIENT_TIMEOUT);
    let error = gateway
        .charge_request(&client, Some(&key), &body)
        .send()
        .await
        .expect_err("the client times out");
    assert!(error.is_timeout(), "{error}");

    let started = Instant::now();
    gateway.charge(&key, &body).await.assert_problem(504);
    assert!(started.elapsed() >= SLOW);
    assert!(gateway.ledger().await.is_empty());
}

#[tokio::test]
async fn a_flaky_token_fails_twice_per_key_then_succeeds_once() {
    let gateway = TestGateway::spawn().await;
    let key = new_key();
    let body = charge_body("tok_flaky", 300);
    gateway.charge(&key, &body).await.assert_problem(503);
    gateway.charge(&key, &body).await.assert_problem(503);
    assert!(gateway.ledger().await.is_empty(), "failures record nothing");
    let third = gateway.charge(&key, &body).await;
    let created = third.assert_json(201).clone();
    let fourth = gateway.charge(&key, &body).await;
    assert_eq!(fourth.assert_json(201), &created);
    assert_eq!(gateway.ledger().await.len(), 1);

    // Another key starts over.
    let other = new_key();
    gateway.charge(&other, &body).await.assert_problem(503);
}

#[tokio::test]
async fn any_other_token_is_captured() {
    let gateway = TestGateway::spawn().await;
    for token in ["tok_visa", "tok_mastercard", "pm_123", "TOK_DECLINE"] {
        let reply: Reply = gateway.charge(&new_key(), &charge_body(token, 100)).await;
        assert_eq!(reply.assert_json(201)["status"], "captured", "{token}");
    }
}
