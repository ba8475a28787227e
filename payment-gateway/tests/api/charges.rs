//! Charges: creation, reads, listing by reference, and every 4xx.

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{charge_body, charge_body_for, new_key, TestGateway};

#[tokio::test]
async fn a_charge_is_captured_with_201_and_recorded() {
    let gateway = TestGateway::spawn().await;
    let reference = Uuid::new_v4();
    let reply = gateway
        .charge(&new_key(), &charge_body_for(reference, "tok_visa", 1250))
        .await;
    let body = reply.assert_json(201);
    let charge_id = body["charge_id"].as_str().expect("charge_id");
    assert!(
        charge_id.starts_with("ch_") && charge_id.len() == 35,
        "{charge_id}"
    );
    assert_eq!(body["status"], "captured");
    assert_eq!(body["amount_cents"], 1250);
    assert_eq!(body["currency"], "EUR");
    assert_eq!(body["reference"], reference.to_string());
    assert!(body["created_at"].is_string());
    assert!(body.get("refund_id").is_none() && body.get("decline_code").is_none());

    let ledger = gateway.ledger().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].charge_id, charge_id);
    assert_eq!(ledger[0].token, "tok_visa");
}

#[tokio::test]
async fn a_charge_is_read_back_by_id() {
    let gateway = TestGateway::spawn().await;
    let created = gateway.captured("tok_visa", 990).await;
    let id = created["charge_id"].as_str().unwrap();
    let reply = gateway.get(&format!("/charges/{id}")).await;
    assert_eq!(reply.assert_json(200), &created);
}

#[tokio::test]
async fn an_unknown_charge_is_404() {
    let gateway = TestGateway::spawn().await;
    gateway
        .get("/charges/ch_00000000000000000000000000000000")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn charges_are_listed_by_reference_oldest_first() {
    let gateway = TestGateway::spawn().await;
    let reference = Uuid::new_v4();
    let first = gateway
        .charge(&new_key(), &charge_body_for(reference, "tok_decline", 100))
        .await;
    let second = gateway
        .charge(&new_key(), &charge_body_for(reference, "tok_visa", 100))
        .await;
    gateway.captured("tok_visa", 100).await; // another reference

    let reply = gateway
        .get(&format!("/charges?reference={reference}"))
        .await;
    let charges = reply.assert_json(200)["charges"]
        .as_array()
        .unwrap()
        .clone();
    let ids: Vec<&str> = charges
        .iter()
        .map(|c| c["charge_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            first.body["charge_id"].as_str().unwrap(),
            second.body["charge_id"].as_str().unwrap()
        ]
    );
    assert_eq!(charges[0]["status"], "declined");
    assert_eq!(charges[0]["decline_code"], "card_declined");
    assert_eq!(charges[1]["status"], "captured");

    let none = gateway
        .get(&format!("/charges?reference={}", Uuid::new_v4()))
        .await;
    assert_eq!(none.assert_json(200), &json!({"charges": []}));
}

#[tokio::test]
async fn listing_needs_a_uuid_reference() {
    let gateway = TestGateway::spawn().await;
    gateway
        .get("/charges?reference=order-1")
        .await
        .assert_problem(400);
    gateway.get("/charges").await.assert_problem(400);
}

#[tokio::test]
async fn a_charge_without_idempotency_key_is_400() {
    let gateway = TestGateway::spawn().await;
    let response = gateway
        .charge_request(&gateway.http, None, &charge_body("tok_visa", 100))
        .send()
        .await
        .unwrap();
    let reply = crate::helpers::Reply::read(response).await;
    assert!(reply.assert_problem(400)["detail"]
        .as_str()
        .unwrap()
        .contains("Idempotency-Key"));
    gateway
        .charge("bad key", &charge_body("tok_visa", 100))
        .await
        .assert_problem(400);
    assert!(gateway.ledger().await.is_empty());
}

#[tokio::test]
async fn invalid_charge_bodies_are_400_and_record_nothing() {
    let gateway = TestGateway::spawn().await;
    let reference = Uuid::new_v4();
    let invalid = [
        json!({"amount_cents": 0, "currency": "EUR", "token": "tok_visa", "reference": reference}),
        json!({"amount_cents": -1, "currency": "EUR", "token": "tok_visa", "reference": reference}),
        json!({"amount_cents": 100, "currency": "eur", "token": "tok_visa", "reference": reference}),
        json!({"amount_cents": 100, "currency": "EURO", "token": "tok_visa", "reference": reference}),
        json!({"amount_cents": 100, "currency": "EUR", "token": "", "reference": reference}),
        json!({"amount_cents": 100, "currency": "EUR", "token": "tok_visa", "reference": "order-1"}),
        json!({"amount_cents": 100, "currency": "EUR", "token": "tok_visa"}),
        json!({"amount_cents": "100", "currency": "EUR", "token": "tok_visa", "reference": reference}),
        json!([]),
    ];
    for body in invalid {
        gateway.charge(&new_key(), &body).await.assert_problem(400);
    }
    let not_json = gateway
        .http
        .post(gateway.url("/charges"))
        .header("Idempotency-Key", new_key())
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::read(not_json)
        .await
        .assert_problem(400);
    assert!(gateway.ledger().await.is_empty());
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let gateway = TestGateway::spawn().await;
    gateway.get("/payments").await.assert_problem(404);
    let delete = gateway
        .http
        .delete(gateway.url("/charges"))
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::read(delete)
        .await
        .assert_problem(405);
}

#[tokio::test]
async fn health_probes_answer() {
    let gateway = TestGateway::spawn().await;
    assert_eq!(gateway.get("/health/live").await.status, 200);
    assert_eq!(gateway.get("/health/ready").await.status, 200);
}
