//! The ledger functions other crates' tests use.

use uuid::Uuid;

use payment_gateway::ledger;

use crate::helpers::{charge_body_for, new_key, TestGateway};

#[tokio::test]
async fn net_captures_subtract_refunds_and_ignore_declines() {
    let gateway = TestGateway::spawn().await;
    let (paid, refunded, declined) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    gateway
        .charge(&new_key(), &charge_body_for(paid, "tok_visa", 1000))
        .await;
    let twice = gateway
        .charge(&new_key(), &charge_body_for(paid, "tok_visa", 250))
        .await;
    let back = gateway
        .charge(&new_key(), &charge_body_for(refunded, "tok_visa", 700))
        .await;
    gateway
        .charge(&new_key(), &charge_body_for(declined, "tok_decline", 300))
        .await;
    gateway
        .refund(back.body["charge_id"].as_str().unwrap(), None)
        .await
        .assert_json(200);
    gateway
        .refund(twice.body["charge_id"].as_str().unwrap(), None)
        .await
        .assert_json(200);

    let net = ledger::net_captured_by_reference(&gateway.db.pool)
        .await
        .unwrap();
    assert_eq!(net.len(), 3);
    assert_eq!(net[&paid], 1000);
    assert_eq!(net[&refunded], 0);
    assert_eq!(net[&declined], 0);

    let charges = ledger::charges_for(&gateway.db.pool, paid).await.unwrap();
    let amounts: Vec<i64> = charges.iter().map(|c| c.amount_cents).collect();
    assert_eq!(amounts, [1000, 250]);
    assert!(ledger::charges_for(&gateway.db.pool, Uuid::new_v4())
        .await
        .unwrap()
        .is_empty());
}
