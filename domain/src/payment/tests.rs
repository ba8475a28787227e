//! Given / when / then tests of the payment aggregate.

use uuid::Uuid;

use super::*;
use crate::testing::given;
use crate::DomainEvent;

fn requested() -> PaymentEvent {
    PaymentEvent::PaymentRequested {
        order_id: Uuid::from_u128(1),
        amount_cents: 1300,
        currency: "EUR".into(),
        token: "tok".into(),
    }
}

fn captured() -> PaymentEvent {
    PaymentEvent::PaymentCaptured {
        order_id: Uuid::from_u128(1),
        charge_id: "ch_1".into(),
    }
}

#[test]
fn request_then_capture_then_refund() {
    given(decide, evolve, &[])
        .when(PaymentCommand::Request {
            order_id: Uuid::from_u128(1),
            amount_cents: 1300,
            currency: "EUR".into(),
            token: "tok".into(),
        })
        .then(vec![requested()]);
    given(decide, evolve, &[requested()])
        .when(PaymentCommand::RecordCapture {
            charge_id: "ch_1".into(),
        })
        .then(vec![captured()]);
    given(decide, evolve, &[requested(), captured()])
        .when(PaymentCommand::RecordRefund {
            refund_id: "re_1".into(),
        })
        .then(vec![PaymentEvent::PaymentRefunded {
            order_id: Uuid::from_u128(1),
            charge_id: "ch_1".into(),
            refund_id: "re_1".into(),
        }]);
}

#[test]
fn recording_the_same_outcome_twice_changes_nothing() {
    given(decide, evolve, &[requested(), captured()])
        .when(PaymentCommand::RecordCapture {
            charge_id: "ch_1".into(),
        })
        .then(vec![]);
    given(decide, evolve, &[requested()])
        .when(PaymentCommand::Request {
            order_id: Uuid::from_u128(1),
            amount_cents: 1300,
            currency: "EUR".into(),
            token: "tok".into(),
        })
        .then(vec![]);
    let declined = PaymentEvent::PaymentDeclined {
        order_id: Uuid::from_u128(1),
        code: "x".into(),
    };
    given(decide, evolve, &[requested(), declined])
        .when(PaymentCommand::RecordDecline { code: "x".into() })
        .then(vec![]);
}

#[test]
fn a_late_capture_after_a_failure_is_recorded_so_it_can_be_refunded() {
    let failed = PaymentEvent::PaymentFailed {
        order_id: Uuid::from_u128(1),
        reason: "timeout".into(),
    };
    given(decide, evolve, &[requested(), failed])
        .when(PaymentCommand::RecordCapture {
            charge_id: "ch_1".into(),
        })
        .then(vec![captured()]);
}

#[test]
fn contradictions_and_unrequested_payments_are_refused() {
    given(decide, evolve, &[])
        .when(PaymentCommand::RecordCapture {
            charge_id: "ch".into(),
        })
        .then_error(PaymentError::NotRequested);
    given(decide, evolve, &[requested(), captured()])
        .when(PaymentCommand::RecordDecline { code: "x".into() })
        .then_error(PaymentError::Contradiction {
            status: PaymentStatus::Captured,
            outcome: "a decline",
        });
    given(decide, evolve, &[requested()])
        .when(PaymentCommand::RecordRefund {
            refund_id: "re".into(),
        })
        .then_error(PaymentError::Contradiction {
            status: PaymentStatus::Requested,
            outcome: "a refund",
        });
    given(decide, evolve, &[])
        .when(PaymentCommand::Request {
            order_id: Uuid::from_u128(1),
            amount_cents: 0,
            currency: "EUR".into(),
            token: "tok".into(),
        })
        .then_error(PaymentError::NonPositiveAmount(0));
}

#[test]
fn payment_ids_are_derived_from_the_order() {
    let order = Uuid::from_u128(7);
    assert_eq!(payment_id_for(order), payment_id_for(order));
    assert_ne!(payment_id_for(order), payment_id_for(Uuid::from_u128(8)));
}

#[test]
fn events_round_trip_through_the_log_format() {
    for event in [requested(), captured()] {
        let back = PaymentEvent::from_parts(event.event_type(), 1, &event.to_payload()).unwrap();
        assert_eq!(back, event);
    }
}
