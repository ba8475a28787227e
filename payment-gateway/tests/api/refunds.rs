//! Refunds: success, idempotence, declined and unknown charges.

use payment_gateway::ledger::ChargeStatus;

use crate::helpers::{charge_body, new_key, TestGateway};

#[tokio::test]
async fn a_captured_charge_is_refunded_in_full() {
    let gateway = TestGateway::spawn().await;
    let created = gateway.captured("tok_visa", 2500).await;
    let id = created["charge_id"].as_str().unwrap();
    let reply = gateway.refund(id, Some(&new_key())).await;
    let refunded = reply.assert_json(200).clone();
    assert_eq!(refunded["status"], "refunded");
    assert_eq!(refunded["charge_id"], id);
    assert_eq!(refunded["amount_cents"], 2500);
    assert!(refunded["refund_id"].as_str().unwrap().starts_with("re_"));
    assert!(refunded["refunded_at"].is_string());

    let read = gateway.get(&format!("/charges/{id}")).await;
    assert_eq!(read.assert_json(200), &refunded);
    assert_eq!(gateway.ledger().await[0].status, ChargeStatus::Refunded);
}

#[tokio::test]
async fn refunding_twice_answers_the_same_refund() {
    let gateway = TestGateway::spawn().await;
    let created = gateway.captured("tok_visa", 2500).await;
    let id = created["charge_id"].as_str().unwrap();
    let first = gateway.refund(id, None).await;
    let second = gateway.refund(id, Some(&new_key())).await;
    assert_eq!(second.assert_json(200), first.assert_json(200));
}

#[tokio::test]
async fn a_declined_charge_cannot_be_refunded() {
    let gateway = TestGateway::spawn().await;
    let declined = gateway
        .charge(&new_key(), &charge_body("tok_decline", 100))
        .await;
    let id = declined.assert_problem(402)["charge_id"].as_str().unwrap();
    gateway.refund(id, None).await.assert_problem(422);
    assert_eq!(gateway.ledger().await[0].status, ChargeStatus::Declined);
}

#[tokio::test]
async fn refunding_an_unknown_charge_is_404() {
    let gateway = TestGateway::spawn().await;
    gateway.refund("ch_unknown", None).await.assert_problem(404);
}

#[tokio::test]
async fn a_malformed_refund_key_is_400() {
    let gateway = TestGateway::spawn().await;
    let created = gateway.captured("tok_visa", 100).await;
    let id = created["charge_id"].as_str().unwrap();
    gateway
        .refund(id, Some("has space"))
        .await
        .assert_problem(400);
    assert_eq!(gateway.ledger().await[0].status, ChargeStatus::Captured);
}
