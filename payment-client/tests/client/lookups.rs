//! `refund` and `charges_for_reference`.

use payment_client::{ChargeStatus, PaymentError, PaymentProvider};
use payment_gateway::Behaviour;

use crate::helpers::{charge_request, config, provider, Simulator, TRACEPARENT};

#[tokio::test]
async fn a_captured_charge_is_refunded_idempotently() {
    let simulator = Simulator::spawn(Behaviour::default()).await;
    let client = provider(config(&simulator.url()));
    let charge = client
        .charge(&charge_request("tok_visa", 3000))
        .await
        .unwrap();

    let refunded = client
        .refund(&charge.charge_id, "refund-1", Some(TRACEPARENT))
        .await
        .expect("refunded");
    assert_eq!(refunded.status, ChargeStatus::Refunded);
    assert_eq!(refunded.charge_id, charge.charge_id);
    assert!(refunded.refund_id.as_deref().unwrap().starts_with("re_"));
    assert!(refunded.refunded_at.is_some());

    let again = client
        .refund(&charge.charge_id, "refund-1", None)
        .await
        .expect("refunding again is harmless");
    assert_eq!(again, refunded);

    let seen = simulator.seen();
    let refund = &seen[1];
    assert_eq!(refund.path, format!("/charges/{}/refund", charge.charge_id));
    assert_eq!(refund.idempotency_key.as_deref(), Some("refund-1"));
    assert_eq!(refund.traceparent.as_deref(), Some(TRACEPARENT));
}

#[tokio::test]
async fn refunds_of_declined_or_unknown_charges_are_decoded() {
    let simulator = Simulator::spawn(Behaviour::default()).await;
    let client = provider(config(&simulator.url()));
    let request = charge_request("tok_decline", 3000);
    client.charge(&request).await.expect_err("declined");
    let declined = client
        .charges_for_reference(request.reference, None)
        .await
        .unwrap();

    let error = client
        .refund(&declined[0].charge_id, "refund-2", None)
        .await
        .expect_err("nothing to refund");
    assert!(matches!(error, PaymentError::Invalid { .. }), "{error:?}");
    let unknown = client.refund("ch_unknown", "refund-3", None).await;
    assert_eq!(unknown, Err(PaymentError::NotFound));
}

#[tokio::test]
async fn charges_are_found_by_reference() {
    let simulator = Simulator::spawn(Behaviour::default()).await;
    let client = provider(config(&simulator.url()));
    let first = charge_request("tok_decline_expired_card", 1500);
    let mut second = charge_request("tok_visa", 1500);
    second.reference = first.reference;
    client.charge(&first).await.expect_err("declined");
    let captured = client.charge(&second).await.unwrap();

    let charges = client
        .charges_for_reference(first.reference, Some(TRACEPARENT))
        .await
        .unwrap();
    assert_eq!(charges.len(), 2);
    assert_eq!(charges[0].status, ChargeStatus::Declined);
    assert_eq!(charges[0].decline_code.as_deref(), Some("expired_card"));
    assert_eq!(charges[1], captured);

    let lookup = simulator.seen().pop().unwrap();
    assert_eq!(
        (lookup.method.as_str(), lookup.path.as_str()),
        ("GET", "/charges")
    );
    assert_eq!(lookup.traceparent.as_deref(), Some(TRACEPARENT));

    let none = client
        .charges_for_reference(uuid::Uuid::new_v4(), None)
        .await
        .unwrap();
    assert!(none.is_empty());
}
