use serde_json::json;

use super::*;
use crate::testing::{self, Given};
use crate::{DomainEvent, EventDecodeError};

const MUG: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
const CUP: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002);
const GHOST: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00ff);

fn given(events: &[OrderEvent]) -> Given<OrderState, OrderCommand, OrderEvent, OrderError> {
    testing::given(decide, evolve, events)
}

fn at() -> DateTime<Utc> {
    "2025-01-02T03:04:05.123Z".parse().unwrap()
}

fn catalog() -> HashMap<Uuid, i64> {
    HashMap::from([(MUG, 1_250), (CUP, 300)])
}

fn want(product_id: Uuid, quantity: i64) -> RequestedLine {
    RequestedLine {
        product_id,
        quantity,
    }
}

fn line(product_id: Uuid, quantity: i64, unit_price_cents: i64) -> OrderLine {
    OrderLine {
        product_id,
        quantity,
        unit_price_cents,
    }
}

fn place(user_id: &str, lines: Vec<RequestedLine>) -> OrderCommand {
    place_with(user_id, lines, "tok_visa", catalog())
}

fn place_with(
    user_id: &str,
    lines: Vec<RequestedLine>,
    payment_token: &str,
    prices: HashMap<Uuid, i64>,
) -> OrderCommand {
    OrderCommand::Place {
        user_id: user_id.to_owned(),
        lines,
        payment_token: payment_token.to_owned(),
        prices,
        placed_at: at(),
    }
}

fn placed(user_id: &str, lines: Vec<OrderLine>, total_cents: i64) -> OrderEvent {
    OrderEvent::OrderPlaced {
        user_id: user_id.to_owned(),
        lines,
        total_cents,
        payment_token: "tok_visa".to_owned(),
        placed_at: at(),
    }
}

/// `n` distinct product ids, all in the returned catalog at 1 cent.
fn many_products(n: usize) -> (Vec<RequestedLine>, HashMap<Uuid, i64>) {
    let ids: Vec<Uuid> = (1..=n as u128).map(Uuid::from_u128).collect();
    let lines = ids.iter().map(|&id| want(id, 1)).collect();
    let prices = ids.iter().map(|&id| (id, 1)).collect();
    (lines, prices)
}

// ---- place: happy paths ----

#[test]
fn place_prices_lines_from_the_catalog_and_totals_them() {
    given(&[])
        .when(place("alice", vec![want(MUG, 2), want(CUP, 3)]))
        .then(vec![placed(
            "alice",
            vec![line(MUG, 2, 1_250), line(CUP, 3, 300)],
            3_400,
        )]);
}

#[test]
fn place_ignores_catalog_entries_not_ordered() {
    given(&[])
        .when(place("alice", vec![want(CUP, 1)]))
        .then(vec![placed("alice", vec![line(CUP, 1, 300)], 300)]);
}

#[test]
fn place_accepts_the_quantity_bounds() {
    given(&[])
        .when(place("alice", vec![want(MUG, 1), want(CUP, 1_000)]))
        .then(vec![placed(
            "alice",
            vec![line(MUG, 1, 1_250), line(CUP, 1_000, 300)],
            301_250,
        )]);
}

#[test]
fn place_accepts_the_maximum_number_of_lines() {
    let (lines, prices) = many_products(MAX_LINES);
    let result = decide(
        &OrderState::NotPlaced,
        place_with("alice", lines, "tok", prices),
    );
    match result.as_deref() {
        Ok(
            [OrderEvent::OrderPlaced {
                lines, total_cents, ..
            }],
        ) => {
            assert_eq!(lines.len(), 50);
            assert_eq!(*total_cents, 50);
        }
        other => panic!("expected one OrderPlaced, got {other:?}"),
    }
}

#[test]
fn place_keeps_the_user_id_as_given() {
    let user = format!(" {} ", "é".repeat(MAX_USER_ID_CHARS - 2)); // 64 characters
    given(&[])
        .when(place(&user, vec![want(MUG, 1)]))
        .then(vec![placed(&user, vec![line(MUG, 1, 1_250)], 1_250)]);
}

// ---- place: rules ----

#[test]
fn place_twice_is_refused() {
    given(&[placed("alice", vec![line(MUG, 1, 1_250)], 1_250)])
        .when(place("alice", vec![want(MUG, 1)]))
        .then_error(OrderError::AlreadyPlaced);
}

#[test]
fn place_with_empty_user_id_is_refused() {
    given(&[])
        .when(place("", vec![want(MUG, 1)]))
        .then_error(OrderError::InvalidUserId);
}

#[test]
fn place_with_blank_user_id_is_refused() {
    given(&[])
        .when(place(" \t ", vec![want(MUG, 1)]))
        .then_error(OrderError::InvalidUserId);
}

#[test]
fn place_with_too_long_user_id_is_refused() {
    given(&[])
        .when(place(
            &"u".repeat(MAX_USER_ID_CHARS + 1),
            vec![want(MUG, 1)],
        ))
        .then_error(OrderError::InvalidUserId);
}

#[test]
fn place_without_lines_is_refused() {
    given(&[])
        .when(place("alice", vec![]))
        .then_error(OrderError::NoLines);
}

#[test]
fn place_with_too_many_lines_is_refused() {
    let (lines, prices) = many_products(MAX_LINES + 1);
    given(&[])
        .when(place_with("alice", lines, "tok", prices))
        .then_error(OrderError::TooManyLines { max: 50, got: 51 });
}

#[test]
fn place_with_zero_quantity_is_refused() {
    given(&[])
        .when(place("alice", vec![want(MUG, 0)]))
        .then_error(OrderError::QuantityOutOfRange {
            product_id: MUG,
            quantity: 0,
        });
}

#[test]
fn place_with_negative_quantity_is_refused() {
    given(&[])
        .when(place("alice", vec![want(MUG, -1)]))
        .then_error(OrderError::QuantityOutOfRange {
            product_id: MUG,
            quantity: -1,
        });
}

#[test]
fn place_with_quantity_above_the_maximum_is_refused() {
    given(&[])
        .when(place("alice", vec![want(MUG, 1_001)]))
        .then_error(OrderError::QuantityOutOfRange {
            product_id: MUG,
            quantity: 1_001,
        });
}

#[test]
fn place_with_the_same_product_twice_is_refused() {
    given(&[])
        .when(place(
            "alice",
            vec![want(MUG, 1), want(CUP, 1), want(MUG, 2)],
        ))
        .then_error(OrderError::DuplicateProduct(MUG));
}

#[test]
fn place_with_unknown_product_is_refused() {
    given(&[])
        .when(place("alice", vec![want(MUG, 1), want(GHOST, 1)]))
        .then_error(OrderError::UnknownProduct(GHOST));
}

#[test]
fn place_with_empty_payment_token_is_refused() {
    given(&[])
        .when(place_with("alice", vec![want(MUG, 1)], "", catalog()))
        .then_error(OrderError::EmptyPaymentToken);
    given(&[])
        .when(place_with("alice", vec![want(MUG, 1)], "   ", catalog()))
        .then_error(OrderError::EmptyPaymentToken);
}

#[test]
fn place_with_too_long_payment_token_is_refused() {
    let token = "t".repeat(MAX_PAYMENT_TOKEN_CHARS + 1);
    given(&[])
        .when(place_with("alice", vec![want(MUG, 1)], &token, catalog()))
        .then_error(OrderError::PaymentTokenTooLong { max: 256 });
}

#[test]
fn place_whose_line_total_overflows_is_refused() {
    let prices = HashMap::from([(MUG, i64::MAX / 2)]);
    given(&[])
        .when(place_with("alice", vec![want(MUG, 3)], "tok", prices))
        .then_error(OrderError::TotalOverflow);
}

#[test]
fn place_whose_sum_overflows_is_refused() {
    let prices = HashMap::from([(MUG, i64::MAX / 2 + 1), (CUP, i64::MAX / 2 + 1)]);
    given(&[])
        .when(place_with(
            "alice",
            vec![want(MUG, 1), want(CUP, 1)],
            "tok",
            prices,
        ))
        .then_error(OrderError::TotalOverflow);
}

#[test]
fn place_reports_the_first_broken_rule() {
    let everything_wrong = || place_with("", vec![], "", HashMap::new());
    given(&[placed("alice", vec![line(MUG, 1, 1_250)], 1_250)])
        .when(everything_wrong())
        .then_error(OrderError::AlreadyPlaced);
    given(&[])
        .when(everything_wrong())
        .then_error(OrderError::InvalidUserId);
    // lines count before any line rule
    let (mut lines, _) = many_products(MAX_LINES + 1);
    lines[0].quantity = 0;
    given(&[])
        .when(place_with("alice", lines, "", HashMap::new()))
        .then_error(OrderError::TooManyLines { max: 50, got: 51 });
    // quantity before duplicate within a line
    given(&[])
        .when(place("alice", vec![want(MUG, 1), want(MUG, 0)]))
        .then_error(OrderError::QuantityOutOfRange {
            product_id: MUG,
            quantity: 0,
        });
    // an earlier line's error wins over a later line's
    given(&[])
        .when(place("alice", vec![want(GHOST, 1), want(MUG, 0)]))
        .then_error(OrderError::UnknownProduct(GHOST));
    // line rules before the payment token
    given(&[])
        .when(place_with("alice", vec![want(GHOST, 1)], "", catalog()))
        .then_error(OrderError::UnknownProduct(GHOST));
}

// ---- evolve ----

#[test]
fn placed_order_starts_pending() {
    let state = [placed("alice", vec![line(MUG, 2, 1_250)], 2_500)]
        .iter()
        .fold(OrderState::default(), evolve);
    assert_eq!(
        state,
        OrderState::Placed(Order {
            user_id: "alice".into(),
            lines: vec![line(MUG, 2, 1_250)],
            total_cents: 2_500,
            status: OrderStatus::Pending,
            placed_at: at(),
            reason: None,
            payment_id: None,
        })
    );
    assert_eq!(state.status(), Some(OrderStatus::Pending));
}

#[test]
fn not_placed_order_has_no_status() {
    let state = OrderState::default();
    assert_eq!(state, OrderState::NotPlaced);
    assert_eq!(state.order(), None);
    assert_eq!(state.status(), None);
}

#[test]
fn a_second_order_placed_event_leaves_the_state_unchanged() {
    let first = placed("alice", vec![line(MUG, 1, 1_250)], 1_250);
    let second = placed("bob", vec![line(CUP, 1, 300)], 300);
    let once = evolve(OrderState::default(), &first);
    assert_eq!(evolve(once.clone(), &second), once);
}

// ---- status ----

#[test]
fn status_uses_screaming_snake_case_everywhere() {
    let all = [
        (OrderStatus::Pending, "PENDING", false),
        (OrderStatus::AwaitingPayment, "AWAITING_PAYMENT", false),
        (OrderStatus::Confirmed, "CONFIRMED", true),
        (OrderStatus::Rejected, "REJECTED", true),
        (OrderStatus::Cancelled, "CANCELLED", true),
    ];
    for (status, name, terminal) in all {
        assert_eq!(status.to_string(), name);
        assert_eq!(serde_json::to_value(status).unwrap(), json!(name));
        assert_eq!(
            serde_json::from_value::<OrderStatus>(json!(name)).unwrap(),
            status
        );
        assert_eq!(status.is_terminal(), terminal);
    }
}

// ---- errors ----

#[test]
fn error_messages_are_clear() {
    let cases = [
        (
            OrderError::AlreadyPlaced,
            "order has already been placed".to_owned(),
        ),
        (
            OrderError::InvalidUserId,
            "user_id must be 1 to 64 characters and not blank".to_owned(),
        ),
        (
            OrderError::NoLines,
            "an order must have at least one line".to_owned(),
        ),
        (
            OrderError::TooManyLines { max: 50, got: 51 },
            "an order can have at most 50 lines (got 51)".to_owned(),
        ),
        (
            OrderError::DuplicateProduct(MUG),
            format!("product {MUG} appears in more than one line"),
        ),
        (
            OrderError::QuantityOutOfRange {
                product_id: MUG,
                quantity: 0,
            },
            format!("quantity for product {MUG} must be between 1 and 1000 (got 0)"),
        ),
        (
            OrderError::UnknownProduct(GHOST),
            "product 01900000-0000-7000-8000-0000000000ff does not exist".to_owned(),
        ),
        (
            OrderError::EmptyPaymentToken,
            "payment token must not be empty".to_owned(),
        ),
        (
            OrderError::PaymentTokenTooLong { max: 256 },
            "payment token must be at most 256 characters".to_owned(),
        ),
        (
            OrderError::TotalOverflow,
            "order total is too large".to_owned(),
        ),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}

// ---- event encoding ----

fn every_event() -> Vec<OrderEvent> {
    vec![
        placed("alice", vec![line(MUG, 2, 1_250), line(CUP, 3, 300)], 3_400),
        OrderEvent::OrderAwaitingPayment {
            payment_id: PAYMENT,
        },
        OrderEvent::OrderConfirmed {
            payment_id: PAYMENT,
        },
        OrderEvent::OrderRejected {
            reason: "no stock".into(),
        },
        OrderEvent::OrderCancelled {
            reason: "cancelled by user".into(),
        },
    ]
}

const PAYMENT: Uuid = Uuid::from_u128(0x77);

fn placed_order() -> OrderEvent {
    placed("alice", vec![line(MUG, 2, 1_250)], 2_500)
}

fn awaiting() -> OrderEvent {
    OrderEvent::OrderAwaitingPayment {
        payment_id: PAYMENT,
    }
}

// ---- lifecycle ----

#[test]
fn a_pending_order_moves_to_payment_then_confirmed() {
    given(&[placed_order()])
        .when(OrderCommand::MarkAwaitingPayment {
            payment_id: PAYMENT,
        })
        .then(vec![awaiting()]);
    given(&[placed_order(), awaiting()])
        .when(OrderCommand::Confirm {
            payment_id: PAYMENT,
        })
        .then(vec![OrderEvent::OrderConfirmed {
            payment_id: PAYMENT,
        }]);
}

#[test]
fn lifecycle_steps_repeated_change_nothing() {
    given(&[placed_order(), awaiting()])
        .when(OrderCommand::MarkAwaitingPayment {
            payment_id: PAYMENT,
        })
        .then(vec![]);
    let confirmed = OrderEvent::OrderConfirmed {
        payment_id: PAYMENT,
    };
    given(&[placed_order(), awaiting(), confirmed])
        .when(OrderCommand::Confirm {
            payment_id: PAYMENT,
        })
        .then(vec![]);
    let rejected = OrderEvent::OrderRejected { reason: "r".into() };
    given(&[placed_order(), rejected])
        .when(OrderCommand::Reject { reason: "r".into() })
        .then(vec![]);
    let cancelled = OrderEvent::OrderCancelled { reason: "c".into() };
    given(&[placed_order(), cancelled])
        .when(OrderCommand::Cancel {
            reason: "c".into(),
            payment_captured: false,
        })
        .then(vec![]);
}

#[test]
fn cancel_is_allowed_until_the_payment_is_captured() {
    let cancel = |captured| OrderCommand::Cancel {
        reason: "cancelled by user".into(),
        payment_captured: captured,
    };
    let cancelled = vec![OrderEvent::OrderCancelled {
        reason: "cancelled by user".into(),
    }];
    given(&[placed_order()])
        .when(cancel(false))
        .then(cancelled.clone());
    given(&[placed_order(), awaiting()])
        .when(cancel(false))
        .then(cancelled);
    given(&[placed_order(), awaiting()])
        .when(cancel(true))
        .then_error(OrderError::PaymentCaptured);
    let confirmed = OrderEvent::OrderConfirmed {
        payment_id: PAYMENT,
    };
    given(&[placed_order(), awaiting(), confirmed])
        .when(cancel(false))
        .then_error(OrderError::PaymentCaptured);
    given(&[])
        .when(cancel(false))
        .then_error(OrderError::NotPlaced);
}

#[test]
fn transitions_out_of_order_are_refused() {
    given(&[placed_order()])
        .when(OrderCommand::Confirm {
            payment_id: PAYMENT,
        })
        .then_error(OrderError::InvalidTransition {
            status: OrderStatus::Pending,
            action: "confirmed",
        });
    let rejected = OrderEvent::OrderRejected { reason: "r".into() };
    given(&[placed_order(), rejected])
        .when(OrderCommand::Cancel {
            reason: "c".into(),
            payment_captured: false,
        })
        .then_error(OrderError::InvalidTransition {
            status: OrderStatus::Rejected,
            action: "cancelled",
        });
    given(&[placed_order(), awaiting()])
        .when(OrderCommand::Reject { reason: "r".into() })
        .then_error(OrderError::InvalidTransition {
            status: OrderStatus::AwaitingPayment,
            action: "rejected",
        });
}

#[test]
fn lifecycle_events_set_status_reason_and_payment() {
    let state = [
        placed_order(),
        awaiting(),
        OrderEvent::OrderCancelled {
            reason: "payment declined: x".into(),
        },
    ]
    .iter()
    .fold(OrderState::default(), evolve);
    let order = state.order().unwrap();
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.reason.as_deref(), Some("payment declined: x"));
    assert_eq!(order.payment_id, Some(PAYMENT));
}

#[test]
fn events_belong_to_the_orders_stream() {
    assert_eq!(OrderEvent::STREAM_TYPE, "orders");
}

#[test]
fn every_event_round_trips_through_its_stored_parts() {
    for event in every_event() {
        let decoded = OrderEvent::from_parts(
            event.event_type(),
            event.schema_version(),
            &event.to_payload(),
        );
        assert_eq!(decoded, Ok(event));
    }
}

#[test]
fn event_types_match_the_serde_tags_and_the_known_list() {
    let events = every_event();
    let types: Vec<_> = events.iter().map(DomainEvent::event_type).collect();
    assert_eq!(types, OrderEvent::EVENT_TYPES);
    for event in &events {
        let tagged = serde_json::to_value(event).unwrap();
        assert_eq!(tagged["event_type"], event.event_type());
        assert_eq!(event.schema_version(), 1);
    }
}

#[test]
fn event_payloads_are_pinned() {
    let event = placed("alice", vec![line(MUG, 2, 1_250)], 2_500);
    assert_eq!(event.event_type(), "OrderPlaced");
    assert_eq!(
        event.to_payload(),
        json!({
            "user_id": "alice",
            "lines": [{
                "product_id": "01900000-0000-7000-8000-000000000001",
                "quantity": 2,
                "unit_price_cents": 1250,
            }],
            "total_cents": 2500,
            "payment_token": "tok_visa",
            "placed_at": "2025-01-02T03:04:05.123Z",
        })
    );
}

#[test]
fn unknown_event_type_is_refused() {
    assert_eq!(
        OrderEvent::from_parts("ProductRestocked", 1, &json!({"quantity": 1})),
        Err(EventDecodeError::UnknownType {
            stream_type: "orders".into(),
            event_type: "ProductRestocked".into(),
        })
    );
}

#[test]
fn unsupported_schema_version_is_refused() {
    let payload = every_event()[0].to_payload();
    assert_eq!(
        OrderEvent::from_parts("OrderPlaced", 0, &payload),
        Err(EventDecodeError::UnsupportedSchemaVersion {
            event_type: "OrderPlaced".into(),
            version: 0,
        })
    );
}

#[test]
fn payload_with_a_wrongly_typed_field_is_refused() {
    let mut payload = every_event()[0].to_payload();
    payload["total_cents"] = json!("lots");
    match OrderEvent::from_parts("OrderPlaced", 1, &payload) {
        Err(EventDecodeError::InvalidPayload { event_type, .. }) => {
            assert_eq!(event_type, "OrderPlaced");
        }
        other => panic!("expected InvalidPayload, got {other:?}"),
    }
}
