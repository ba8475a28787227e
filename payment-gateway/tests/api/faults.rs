//! Load-test flags: failure rate and latency.

use std::time::{Duration, Instant};

use payment_gateway::ledger::ChargeStatus;
use payment_gateway::Behaviour;

use crate::helpers::{charge_body, new_key, TestGateway};

#[tokio::test]
async fn a_failure_rate_of_one_answers_503_and_records_nothing() {
    let healthy = TestGateway::spawn().await;
    let created = healthy.captured("tok_visa", 100).await;
    let id = created["charge_id"].as_str().unwrap();
    let failing = healthy
        .sibling(Behaviour {
            failure_rate: 1.0,
            ..Behaviour::default()
        })
        .await;

    for _ in 0..5 {
        failing
            .charge(&new_key(), &charge_body("tok_visa", 100))
            .await
            .assert_problem(503);
    }
    failing.refund(id, None).await.assert_problem(503);
    // Failures come before anything is looked at, even an invalid body.
    failing
        .charge(&new_key(), &serde_json::json!({}))
        .await
        .assert_problem(503);

    let ledger = healthy.ledger().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].status, ChargeStatus::Captured);
    // Reads are not failed.
    failing
        .get(&format!("/charges/{id}"))
        .await
        .assert_json(200);
}

#[tokio::test]
async fn latency_is_added_to_every_response() {
    let latency = Duration::from_millis(250);
    let gateway = TestGateway::spawn_with(Behaviour {
        latency,
        ..Behaviour::default()
    })
    .await;
    let started = Instant::now();
    let created = gateway.captured("tok_visa", 100).await;
    assert!(started.elapsed() >= latency);
    let id = created["charge_id"].as_str().unwrap();

    let started = Instant::now();
    gateway
        .get(&format!("/charges/{id}"))
        .await
        .assert_json(200);
    assert!(started.elapsed() >= latency);

    let started = Instant::now();
    gateway.get("/charges/ch_unknown").await.assert_problem(404);
    assert!(started.elapsed() >= latency);
}
