//! `Idempotency-Key`: replays, conflicting reuse, concurrent duplicates.

use futures::future::join_all;

use crate::helpers::{charge_body, new_key, Reply, TestGateway};

#[tokio::test]
async fn the_same_key_and_body_replay_the_same_capture() {
    let gateway = TestGateway::spawn().await;
    let key = new_key();
    let body = charge_body("tok_visa", 1000);
    let first = gateway.charge(&key, &body).await;
    let second = gateway.charge(&key, &body).await;
    assert_eq!(second.assert_json(201), first.assert_json(201));
    assert_eq!(gateway.ledger().await.len(), 1);
}

#[tokio::test]
async fn the_same_key_and_body_replay_the_same_decline() {
    let gateway = TestGateway::spawn().await;
    let key = new_key();
    let body = charge_body("tok_decline_insufficient_funds", 1000);
    let first = gateway.charge(&key, &body).await;
    let second = gateway.charge(&key, &body).await;
    assert_eq!(second.assert_problem(402), first.assert_problem(402));
    assert_eq!(gateway.ledger().await.len(), 1);
}

#[tokio::test]
async fn a_replay_after_a_refund_still_answers_as_the_first_time() {
    let gateway = TestGateway::spawn().await;
    let key = new_key();
    let body = charge_body("tok_visa", 1000);
    let first = gateway.charge(&key, &body).await;
    let id = first.body["charge_id"].as_str().unwrap();
    gateway.refund(id, None).await.assert_json(200);
    let replay = gateway.charge(&key, &body).await;
    assert_eq!(replay.assert_json(201), first.assert_json(201));
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let gateway = TestGateway::spawn().await;
    let key = new_key();
    let body = charge_body("tok_visa", 1000);
    gateway.charge(&key, &body).await.assert_json(201);
    let mut other = body.clone();
    other["amount_cents"] = 1001.into();
    gateway.charge(&key, &other).await.assert_problem(422);
    let mut other_token = body.clone();
    other_token["token"] = "tok_decline".into();
    gateway.charge(&key, &other_token).await.assert_problem(422);
    assert_eq!(gateway.ledger().await.len(), 1);
}

#[tokio::test]
async fn the_same_body_in_another_json_layout_is_the_same_request() {
    let gateway = TestGateway::spawn().await;
    let key = new_key();
    let body = charge_body("tok_visa", 1000);
    let first = gateway.charge(&key, &body).await;
    let reordered = format!(
        r#"{{ "reference": {}, "token": "tok_visa", "currency": "EUR", "amount_cents": 1000 }}"#,
        body["reference"]
    );
    let response = gateway
        .http
        .post(gateway.url("/charges"))
        .header("Idempotency-Key", &key)
        .header("content-type", "application/json")
        .body(reordered)
        .send()
        .await
        .unwrap();
    let replay = Reply::read(response).await;
    assert_eq!(replay.assert_json(201), first.assert_json(201));
}

#[tokio::test]
async fn concurrent_duplicate_requests_create_exactly_one_charge() {
    let gateway = TestGateway::spawn().await;
    let key = new_key();
    let body = charge_body("tok_visa", 4200);
    let replies = join_all((0..20).map(|_| gateway.charge(&key, &body))).await;
    let first = replies[0].assert_json(201).clone();
    for reply in &replies {
        assert_eq!(reply.assert_json(201), &first);
    }
    assert_eq!(gateway.ledger().await.len(), 1);
}
