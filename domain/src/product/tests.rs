use serde_json::json;

use super::*;
use crate::testing::{self, Given};
use crate::{DomainEvent, EventDecodeError};

fn given(
    events: &[ProductEvent],
) -> Given<ProductState, ProductCommand, ProductEvent, ProductError> {
    testing::given(decide, evolve, events)
}

fn register(name: &str, price_cents: i64, initial_stock: i64) -> ProductCommand {
    ProductCommand::Register {
        name: name.to_owned(),
        price_cents,
        initial_stock,
    }
}

fn registered(name: &str, price_cents: i64, initial_stock: i64) -> ProductEvent {
    ProductEvent::ProductRegistered {
        name: name.to_owned(),
        price_cents,
        initial_stock,
    }
}

fn restock(quantity: i64) -> ProductCommand {
    ProductCommand::Restock { quantity }
}

fn restocked(quantity: i64) -> ProductEvent {
    ProductEvent::ProductRestocked { quantity }
}

fn state_after(events: &[ProductEvent]) -> ProductState {
    events.iter().fold(ProductState::default(), evolve)
}

// ---- register ----

#[test]
fn register_new_product_emits_product_registered() {
    given(&[])
        .when(register("Coffee mug", 1_250, 10))
        .then(vec![registered("Coffee mug", 1_250, 10)]);
}

#[test]
fn register_trims_the_name() {
    given(&[])
        .when(register("  Coffee mug\n", 1_250, 10))
        .then(vec![registered("Coffee mug", 1_250, 10)]);
}

#[test]
fn register_accepts_zero_initial_stock() {
    given(&[])
        .when(register("Mug", 1, 0))
        .then(vec![registered("Mug", 1, 0)]);
}

#[test]
fn register_accepts_a_name_of_exactly_the_maximum_length_in_characters() {
    let name = "é".repeat(MAX_NAME_CHARS); // 400 bytes, 200 characters
    given(&[])
        .when(register(&name, 1, 0))
        .then(vec![registered(&name, 1, 0)]);
}

#[test]
fn register_twice_is_refused() {
    given(&[registered("Mug", 1_250, 10)])
        .when(register("Mug", 1_250, 10))
        .then_error(ProductError::AlreadyRegistered);
}

#[test]
fn register_with_empty_name_is_refused() {
    given(&[])
        .when(register("", 1_250, 10))
        .then_error(ProductError::EmptyName);
}

#[test]
fn register_with_whitespace_only_name_is_refused() {
    given(&[])
        .when(register(" \t\n ", 1_250, 10))
        .then_error(ProductError::EmptyName);
}

#[test]
fn register_with_too_long_name_is_refused() {
    given(&[])
        .when(register(&"x".repeat(MAX_NAME_CHARS + 1), 1_250, 10))
        .then_error(ProductError::NameTooLong { max: 200 });
}

#[test]
fn register_with_zero_price_is_refused() {
    given(&[])
        .when(register("Mug", 0, 10))
        .then_error(ProductError::NonPositivePrice(0));
}

#[test]
fn register_with_negative_price_is_refused() {
    given(&[])
        .when(register("Mug", -5, 10))
        .then_error(ProductError::NonPositivePrice(-5));
}

#[test]
fn register_with_negative_initial_stock_is_refused() {
    given(&[])
        .when(register("Mug", 1_250, -1))
        .then_error(ProductError::NegativeInitialStock(-1));
}

#[test]
fn register_reports_the_first_broken_rule() {
    given(&[registered("Mug", 1, 1)])
        .when(register("", 0, -1))
        .then_error(ProductError::AlreadyRegistered);
    given(&[])
        .when(register("", 0, -1))
        .then_error(ProductError::EmptyName);
    given(&[])
        .when(register("Mug", 0, -1))
        .then_error(ProductError::NonPositivePrice(0));
}

// ---- restock ----

#[test]
fn restock_registered_product_emits_product_restocked() {
    given(&[registered("Mug", 1_250, 10)])
        .when(restock(5))
        .then(vec![restocked(5)]);
}

#[test]
fn restock_unregistered_product_is_refused() {
    given(&[])
        .when(restock(5))
        .then_error(ProductError::NotRegistered);
}

#[test]
fn restock_with_zero_quantity_is_refused() {
    given(&[registered("Mug", 1_250, 10)])
        .when(restock(0))
        .then_error(ProductError::NonPositiveQuantity(0));
}

#[test]
fn restock_with_negative_quantity_is_refused() {
    given(&[registered("Mug", 1_250, 10)])
        .when(restock(-3))
        .then_error(ProductError::NonPositiveQuantity(-3));
}

#[test]
fn restock_up_to_the_limit_is_accepted() {
    given(&[registered("Mug", 1_250, 10)])
        .when(restock(i64::MAX - 10))
        .then(vec![restocked(i64::MAX - 10)]);
}

#[test]
fn restock_beyond_the_limit_is_refused() {
    given(&[registered("Mug", 1_250, 10)])
        .when(restock(i64::MAX - 9))
        .then_error(ProductError::StockOverflow);
    given(&[registered("Mug", 1_250, i64::MAX)])
        .when(restock(1))
        .then_error(ProductError::StockOverflow);
}

// ---- evolve ----

#[test]
fn registered_product_starts_with_its_initial_stock_available() {
    let state = state_after(&[registered("Mug", 1_250, 10)]);
    assert_eq!(
        state,
        ProductState::Registered(Product {
            name: "Mug".into(),
            price_cents: 1_250,
            available: 10,
            reserved: 0,
            sold: 0,
            reservations: Default::default(),
            recently_closed: Default::default(),
        })
    );
    assert_eq!(state.price_cents(), Some(1_250));
    assert!(state.is_registered());
}

#[test]
fn restocks_add_to_available_stock() {
    let state = state_after(&[registered("Mug", 1_250, 10), restocked(5), restocked(7)]);
    let product = state.product().expect("registered");
    assert_eq!(product.available, 22);
    assert_eq!(product.total_stock(), Some(22));
}

#[test]
fn unregistered_product_has_no_price() {
    let state = ProductState::default();
    assert_eq!(state, ProductState::Unregistered);
    assert_eq!(state.price_cents(), None);
    assert_eq!(state.product(), None);
}

#[test]
fn events_that_cannot_apply_leave_the_state_unchanged() {
    assert_eq!(state_after(&[restocked(5)]), ProductState::Unregistered);
    let once = state_after(&[registered("Mug", 1_250, 10)]);
    let twice = state_after(&[registered("Mug", 1_250, 10), registered("Cup", 9, 99)]);
    assert_eq!(once, twice);
}

// ---- errors ----

#[test]
fn error_messages_are_clear() {
    let cases = [
        (
            ProductError::AlreadyRegistered,
            "product is already registered",
        ),
        (ProductError::NotRegistered, "product is not registered"),
        (ProductError::EmptyName, "name must not be empty"),
        (
            ProductError::NameTooLong { max: 200 },
            "name must be at most 200 characters",
        ),
        (
            ProductError::NonPositivePrice(0),
            "price_cents must be greater than 0 (got 0)",
        ),
        (
            ProductError::NegativeInitialStock(-1),
            "initial_stock must be 0 or greater (got -1)",
        ),
        (
            ProductError::NonPositiveQuantity(-3),
            "quantity must be greater than 0 (got -3)",
        ),
        (
            ProductError::StockOverflow,
            "quantity is too large: the product's stock would exceed 9223372036854775807",
        ),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}

// ---- event encoding ----

fn every_event() -> Vec<ProductEvent> {
    vec![
        registered("Mug", 1_250, 10),
        restocked(5),
        ProductEvent::StockReserved {
            order_id: ORDER,
            quantity: 2,
        },
        ProductEvent::ReservationReleased {
            order_id: ORDER,
            quantity: 2,
        },
        ProductEvent::ReservationCommitted {
            order_id: ORDER,
            quantity: 2,
        },
    ]
}

const ORDER: Uuid = Uuid::from_u128(0x42);

fn reserved(quantity: i64) -> ProductEvent {
    ProductEvent::StockReserved {
        order_id: ORDER,
        quantity,
    }
}

// ---- reservations ----

#[test]
fn reserving_holds_available_stock() {
    given(&[registered("Mug", 1_250, 10)])
        .when(ProductCommand::Reserve {
            order_id: ORDER,
            quantity: 3,
        })
        .then(vec![reserved(3)]);
    let product = state_after(&[registered("Mug", 1_250, 10), reserved(3)]);
    let product = product.product().unwrap();
    assert_eq!(
        (product.available, product.reserved, product.sold),
        (7, 3, 0)
    );
}

#[test]
fn reserving_more_than_available_is_refused_with_both_numbers() {
    given(&[registered("Mug", 1_250, 2)])
        .when(ProductCommand::Reserve {
            order_id: ORDER,
            quantity: 3,
        })
        .then_error(ProductError::InsufficientStock {
            requested: 3,
            available: 2,
        });
    assert_eq!(
        ProductError::InsufficientStock {
            requested: 3,
            available: 2
        }
        .to_string(),
        "not enough stock: requested 3, available 2"
    );
}

#[test]
fn a_reservation_is_keyed_by_order_so_repeating_it_changes_nothing() {
    given(&[registered("Mug", 1_250, 10), reserved(3)])
        .when(ProductCommand::Reserve {
            order_id: ORDER,
            quantity: 3,
        })
        .then(vec![]);
    // Even after a release, the same order does not reserve again.
    let released = ProductEvent::ReservationReleased {
        order_id: ORDER,
        quantity: 3,
    };
    given(&[registered("Mug", 1_250, 10), reserved(3), released])
        .when(ProductCommand::Reserve {
            order_id: ORDER,
            quantity: 3,
        })
        .then(vec![]);
}

#[test]
fn release_gives_held_stock_back_once() {
    let released = ProductEvent::ReservationReleased {
        order_id: ORDER,
        quantity: 3,
    };
    given(&[registered("Mug", 1_250, 10), reserved(3)])
        .when(ProductCommand::Release { order_id: ORDER })
        .then(vec![released.clone()]);
    given(&[registered("Mug", 1_250, 10), reserved(3), released.clone()])
        .when(ProductCommand::Release { order_id: ORDER })
        .then(vec![]);
    given(&[registered("Mug", 1_250, 10)])
        .when(ProductCommand::Release { order_id: ORDER })
        .then(vec![]);
    let product = state_after(&[registered("Mug", 1_250, 10), reserved(3), released]);
    let product = product.product().unwrap();
    assert_eq!(
        (product.available, product.reserved, product.sold),
        (10, 0, 0)
    );
}

#[test]
fn commit_sells_held_stock_once_and_refuses_without_a_reservation() {
    let committed = ProductEvent::ReservationCommitted {
        order_id: ORDER,
        quantity: 3,
    };
    given(&[registered("Mug", 1_250, 10), reserved(3)])
        .when(ProductCommand::Commit { order_id: ORDER })
        .then(vec![committed.clone()]);
    given(&[registered("Mug", 1_250, 10), reserved(3), committed.clone()])
        .when(ProductCommand::Commit { order_id: ORDER })
        .then(vec![]);
    given(&[registered("Mug", 1_250, 10)])
        .when(ProductCommand::Commit { order_id: ORDER })
        .then_error(ProductError::NoActiveReservation(ORDER));
    let product = state_after(&[registered("Mug", 1_250, 10), reserved(3), committed]);
    let product = product.product().unwrap();
    assert_eq!(
        (product.available, product.reserved, product.sold),
        (7, 0, 3)
    );
}

#[test]
fn the_state_stays_small_however_many_orders_the_product_served() {
    let mut state = state_after(&[registered("Mug", 1_250, 1_000_000)]);
    for n in 0..5_000_u128 {
        let order_id = Uuid::from_u128(n + 1);
        state = evolve(
            state,
            &ProductEvent::StockReserved {
                order_id,
                quantity: 1,
            },
        );
        let closed = if n % 2 == 0 {
            ProductEvent::ReservationCommitted {
                order_id,
                quantity: 1,
            }
        } else {
            ProductEvent::ReservationReleased {
                order_id,
                quantity: 1,
            }
        };
        state = evolve(state, &closed);
    }
    let product = state.product().unwrap();
    assert!(product.reservations.is_empty());
    assert_eq!(product.recently_closed.len(), CLOSED_RESERVATIONS_KEPT);
    assert_eq!(
        (product.available, product.reserved, product.sold),
        (1_000_000 - 2_500, 0, 2_500)
    );
    // The most recent closures are remembered: repeating them changes nothing.
    let last = Uuid::from_u128(5_000);
    let reserve_again = ProductCommand::Reserve {
        order_id: last,
        quantity: 1,
    };
    assert_eq!(decide(&state, reserve_again), Ok(vec![]));
    assert_eq!(
        decide(&state, ProductCommand::Release { order_id: last }),
        Ok(vec![])
    );
    // The oldest are forgotten, so the state does not grow.
    assert_eq!(product.reservation(Uuid::from_u128(1)), None);
}

#[test]
fn reservations_need_a_registered_product() {
    given(&[])
        .when(ProductCommand::Reserve {
            order_id: ORDER,
            quantity: 1,
        })
        .then_error(ProductError::NotRegistered);
}

#[test]
fn events_belong_to_the_inventory_stream() {
    assert_eq!(ProductEvent::STREAM_TYPE, "inventory");
}

#[test]
fn every_event_round_trips_through_its_stored_parts() {
    for event in every_event() {
        let decoded = ProductEvent::from_parts(
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
    assert_eq!(types, ProductEvent::EVENT_TYPES);
    for event in &events {
        let tagged = serde_json::to_value(event).unwrap();
        assert_eq!(tagged["event_type"], event.event_type());
        assert_eq!(event.schema_version(), 1);
    }
}

#[test]
fn event_payloads_are_pinned() {
    let event = registered("Mug", 1_250, 10);
    assert_eq!(event.event_type(), "ProductRegistered");
    assert_eq!(
        event.to_payload(),
        json!({"name": "Mug", "price_cents": 1250, "initial_stock": 10})
    );
    let event = restocked(5);
    assert_eq!(event.event_type(), "ProductRestocked");
    assert_eq!(event.to_payload(), json!({"quantity": 5}));
}

#[test]
fn unknown_event_type_is_refused() {
    assert_eq!(
        ProductEvent::from_parts("OrderPlaced", 1, &json!({})),
        Err(EventDecodeError::UnknownType {
            stream_type: "inventory".into(),
            event_type: "OrderPlaced".into(),
        })
    );
}

#[test]
fn unsupported_schema_version_is_refused() {
    assert_eq!(
        ProductEvent::from_parts("ProductRestocked", 2, &json!({"quantity": 5})),
        Err(EventDecodeError::UnsupportedSchemaVersion {
            event_type: "ProductRestocked".into(),
            version: 2,
        })
    );
}

#[test]
fn payload_missing_a_field_is_refused() {
    let result = ProductEvent::from_parts("ProductRegistered", 1, &json!({"name": "Mug"}));
    match result {
        Err(EventDecodeError::InvalidPayload {
            event_type,
            message,
        }) => {
            assert_eq!(event_type, "ProductRegistered");
            assert!(message.contains("price_cents"), "{message}");
        }
        other => panic!("expected InvalidPayload, got {other:?}"),
    }
}
