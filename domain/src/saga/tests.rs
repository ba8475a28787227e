//! Given inputs / when one more input / then these actions — for every path
//! of the saga, compensations included.

use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

use super::*;

fn policy() -> SagaPolicy {
    SagaPolicy {
        payment_deadline: Duration::seconds(30),
        currency: "EUR".into(),
    }
}

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
}

struct Scenario {
    order: Uuid,
    a: Uuid,
    b: Uuid,
    saga: Option<OrderSaga>,
}

impl Scenario {
    /// An order for 2 × product a (at 500) and 1 × product b (at 300).
    fn new() -> Self {
        Self {
            order: Uuid::from_u128(1),
            a: Uuid::from_u128(10),
            b: Uuid::from_u128(20),
            saga: None,
        }
    }

    fn placed(&self) -> SagaInput {
        SagaInput::OrderPlaced {
            lines: vec![
                OrderLine {
                    product_id: self.a,
                    quantity: 2,
                    unit_price_cents: 500,
                },
                OrderLine {
                    product_id: self.b,
                    quantity: 1,
                    unit_price_cents: 300,
                },
            ],
            total_cents: 1300,
            payment_token: "tok_ok".into(),
        }
    }

    /// Feeds `input` at `now` and returns the actions.
    fn on(&mut self, input: SagaInput, now: DateTime<Utc>) -> Vec<SagaAction> {
        let reaction = react(self.saga.as_ref(), self.order, input, now, &policy());
        self.saga = reaction.saga;
        reaction.actions
    }

    fn saga(&self) -> &OrderSaga {
        self.saga.as_ref().expect("a saga")
    }

    fn payment(&self) -> Uuid {
        crate::payment::payment_id_for(self.order)
    }

    /// Given: placed and both lines reserved at t=0.
    fn awaiting_payment() -> Self {
        let mut s = Self::new();
        s.on(s.placed(), t(0));
        s.on(SagaInput::Reserved { product_id: s.a }, t(0));
        s.on(SagaInput::Reserved { product_id: s.b }, t(0));
        s
    }
}

#[test]
fn placing_reserves_the_first_line_then_the_next() {
    let mut s = Scenario::new();
    assert_eq!(
        s.on(s.placed(), t(0)),
        [SagaAction::Reserve {
            product_id: s.a,
            quantity: 2
        }]
    );
    assert_eq!(s.saga().phase, SagaPhase::Reserving);
    assert_eq!(
        s.on(SagaInput::Reserved { product_id: s.a }, t(0)),
        [SagaAction::Reserve {
            product_id: s.b,
            quantity: 1
        }]
    );
}

#[test]
fn all_lines_reserved_moves_to_payment_with_a_deadline_and_a_charge() {
    let mut s = Scenario::new();
    s.on(s.placed(), t(0));
    s.on(SagaInput::Reserved { product_id: s.a }, t(0));
    let actions = s.on(SagaInput::Reserved { product_id: s.b }, t(5));
    assert_eq!(
        actions,
        [
            SagaAction::MarkAwaitingPayment {
                payment_id: s.payment()
            },
            SagaAction::RequestPayment {
                payment_id: s.payment(),
                amount_cents: 1300,
                currency: "EUR".into(),
                token: "tok_ok".into(),
            },
        ]
    );
    let saga = s.saga();
    assert_eq!(saga.phase, SagaPhase::AwaitingPayment);
    assert_eq!(saga.effect, Some(Effect::Charge));
    assert_eq!(saga.deadline, Some(t(35)));
    assert_eq!(saga.reserved, [s.a, s.b]);
}

#[test]
fn capture_sells_every_reservation_and_confirms() {
    let mut s = Scenario::awaiting_payment();
    let actions = s.on(
        SagaInput::PaymentCaptured {
            charge_id: "ch_1".into(),
        },
        t(1),
    );
    assert_eq!(
        actions,
        [
            SagaAction::ConfirmOrder {
                payment_id: s.payment()
            },
            SagaAction::CommitReservation { product_id: s.a },
            SagaAction::CommitReservation { product_id: s.b },
        ]
    );
    assert!(s.saga().is_finished());
    assert_eq!(
        s.saga().payment,
        PaymentProgress::Captured {
            charge_id: "ch_1".into()
        }
    );
}

#[test]
fn a_later_line_without_stock_releases_the_earlier_ones_and_rejects_naming_the_line() {
    let mut s = Scenario::new();
    s.on(s.placed(), t(0));
    s.on(SagaInput::Reserved { product_id: s.a }, t(0));
    let actions = s.on(
        SagaInput::ReservationRefused {
            product_id: s.b,
            reason: "not enough stock: requested 1, available 0".into(),
        },
        t(0),
    );
    assert_eq!(
        actions,
        [
            SagaAction::Release { product_id: s.a },
            SagaAction::RejectOrder {
                reason: format!(
                    "line 2 (product {}): not enough stock: requested 1, available 0",
                    s.b
                ),
            },
        ]
    );
    assert_eq!(s.saga().phase, SagaPhase::Rejected);
    assert!(s.saga().reserved.is_empty());
    assert!(s.saga().is_finished());
}

#[test]
fn the_first_line_without_stock_rejects_without_releasing_anything() {
    let mut s = Scenario::new();
    s.on(s.placed(), t(0));
    let actions = s.on(
        SagaInput::ReservationRefused {
            product_id: s.a,
            reason: "no".into(),
        },
        t(0),
    );
    assert_eq!(
        actions,
        [SagaAction::RejectOrder {
            reason: format!("line 1 (product {}): no", s.a)
        }]
    );
}

#[test]
fn a_decline_releases_the_stock_and_cancels_with_the_code() {
    let mut s = Scenario::awaiting_payment();
    let actions = s.on(
        SagaInput::PaymentDeclined {
            code: "insufficient_funds".into(),
        },
        t(1),
    );
    assert_eq!(
        actions,
        [
            SagaAction::Release { product_id: s.a },
            SagaAction::Release { product_id: s.b },
            SagaAction::CancelOrder {
                reason: "payment declined: insufficient_funds".into()
            },
        ]
    );
    assert!(s.saga().is_finished());
}

#[test]
fn a_user_cancel_while_reserving_releases_what_is_held() {
    let mut s = Scenario::new();
    s.on(s.placed(), t(0));
    s.on(SagaInput::Reserved { product_id: s.a }, t(0));
    assert_eq!(
        s.on(SagaInput::OrderCancelled, t(1)),
        [SagaAction::Release { product_id: s.a }]
    );
    assert!(s.saga().is_finished());
    // A reservation outcome arriving afterwards changes nothing.
    assert_eq!(s.on(SagaInput::Reserved { product_id: s.b }, t(2)), []);
}

#[test]
fn a_user_cancel_during_payment_releases_and_resolves_the_charge_then_refunds_a_late_capture() {
    let mut s = Scenario::awaiting_payment();
    let actions = s.on(SagaInput::OrderCancelled, t(1));
    assert_eq!(
        actions,
        [
            SagaAction::Release { product_id: s.a },
            SagaAction::Release { product_id: s.b }
        ]
    );
    assert_eq!(s.saga().effect, Some(Effect::Resolve));
    assert_eq!(
        s.on(
            SagaInput::PaymentCaptured {
                charge_id: "ch_9".into()
            },
            t(2)
        ),
        []
    );
    assert_eq!(
        s.saga().effect,
        Some(Effect::Refund {
            charge_id: "ch_9".into()
        })
    );
    assert_eq!(s.on(SagaInput::PaymentRefunded, t(3)), []);
    assert!(s.saga().is_finished());
    assert_eq!(s.saga().payment, PaymentProgress::Refunded);
}

#[test]
fn a_user_cancel_during_payment_with_no_charge_settles_as_failed() {
    let mut s = Scenario::awaiting_payment();
    s.on(SagaInput::OrderCancelled, t(1));
    assert_eq!(
        s.on(
            SagaInput::PaymentFailed {
                reason: "nothing captured".into()
            },
            t(2)
        ),
        []
    );
    assert!(s.saga().is_finished());
    assert_eq!(s.saga().payment, PaymentProgress::Failed);
}

#[test]
fn an_ambiguous_timeout_past_the_deadline_resolves_with_the_provider() {
    let mut s = Scenario::awaiting_payment();
    s.on(SagaInput::ChargeUnanswered { ambiguous: true }, t(3));
    assert_eq!(s.on(SagaInput::Tick, t(29)), []);
    assert_eq!(
        s.saga().effect,
        Some(Effect::Charge),
        "not before the deadline"
    );
    s.on(SagaInput::Tick, t(30));
    assert_eq!(s.saga().effect, Some(Effect::Resolve));
    // Resolution direction 1: the provider had captured it.
    let mut captured = Scenario {
        saga: s.saga.clone(),
        ..Scenario::new()
    };
    let actions = captured.on(
        SagaInput::PaymentCaptured {
            charge_id: "ch_2".into(),
        },
        t(31),
    );
    assert!(actions.contains(&SagaAction::ConfirmOrder {
        payment_id: s.payment()
    }));
    // Direction 2: nothing was captured.
    let actions = s.on(
        SagaInput::PaymentFailed {
            reason: "payment timed out".into(),
        },
        t(31),
    );
    assert_eq!(
        actions,
        [
            SagaAction::Release { product_id: s.a },
            SagaAction::Release { product_id: s.b },
            SagaAction::CancelOrder {
                reason: "payment timed out".into()
            },
        ]
    );
}

#[test]
fn a_provider_outage_never_fails_the_order_it_extends_the_deadline() {
    let mut s = Scenario::awaiting_payment();
    s.on(SagaInput::ChargeUnanswered { ambiguous: false }, t(3));
    s.on(SagaInput::Tick, t(31));
    assert_eq!(s.saga().effect, Some(Effect::Charge));
    assert_eq!(s.saga().deadline, Some(t(61)));
    assert_eq!(s.saga().phase, SagaPhase::AwaitingPayment);
}

/// Regression (chaos run, seed 7): orders whose card the provider never
/// charges (`tok_hang`: "no charge was made", every time) moved their
/// deadline on for ever, stayed AWAITING_PAYMENT holding stock, and their
/// failing calls kept the circuit breaker open for every other order.
#[test]
fn hung_payments_resolve_after_the_last_deadline_extension() {
    let mut s = Scenario::awaiting_payment();
    let mut now = 0;
    for extension in 1..=MAX_DEADLINE_EXTENSIONS {
        s.on(SagaInput::ChargeUnanswered { ambiguous: false }, t(now + 1));
        now += 30;
        s.on(SagaInput::Tick, t(now + 5));
        now += 5;
        assert_eq!(
            s.saga().effect,
            Some(Effect::Charge),
            "extension {extension}"
        );
        assert_eq!(s.saga().deadline_extensions, extension);
    }
    s.on(SagaInput::ChargeUnanswered { ambiguous: false }, t(now + 1));
    s.on(SagaInput::Tick, t(now + 30));
    assert_eq!(
        s.saga().effect,
        Some(Effect::Resolve),
        "resolved, not extended again"
    );
    assert_eq!(s.saga().deadline, None);
    assert_eq!(s.saga().phase, SagaPhase::AwaitingPayment);
}

#[test]
fn every_input_repeated_changes_nothing() {
    let mut s = Scenario::new();
    s.on(s.placed(), t(0));
    assert_eq!(s.on(s.placed(), t(0)), [], "OrderPlaced twice");
    s.on(SagaInput::Reserved { product_id: s.a }, t(0));
    let before = s.saga.clone();
    assert_eq!(s.on(SagaInput::Reserved { product_id: s.a }, t(0)), []);
    assert_eq!(s.saga, before);
    s.on(SagaInput::Reserved { product_id: s.b }, t(0));
    s.on(
        SagaInput::PaymentCaptured {
            charge_id: "ch".into(),
        },
        t(1),
    );
    let done = s.saga.clone();
    for input in [
        SagaInput::PaymentCaptured {
            charge_id: "ch".into(),
        },
        SagaInput::Reserved { product_id: s.b },
        SagaInput::OrderCancelled,
        SagaInput::PaymentDeclined { code: "x".into() },
        SagaInput::Tick,
    ] {
        assert_eq!(s.on(input, t(100)), []);
        assert_eq!(s.saga, done);
    }
}

#[test]
fn inputs_for_an_unknown_order_are_ignored() {
    let mut s = Scenario::new();
    assert_eq!(
        s.on(
            SagaInput::PaymentCaptured {
                charge_id: "x".into()
            },
            t(0)
        ),
        []
    );
    assert!(s.saga.is_none());
}

#[test]
fn the_saga_state_round_trips_through_json() {
    let s = Scenario::awaiting_payment();
    let json = serde_json::to_value(s.saga()).unwrap();
    let back: OrderSaga = serde_json::from_value(json).unwrap();
    assert_eq!(&back, s.saga());
}
