//! The product aggregate: catalog entry and stock of one product.
//!
//! Stream type `"inventory"`; the stream id is the product id (a `Uuid`).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event;

/// Longest product name accepted, in characters (Unicode scalar values), after trimming.
pub const MAX_NAME_CHARS: usize = 200;

/// How many closed (released or sold) reservations a product remembers, most
/// recent first, so that a repeated reserve, release or commit for a recently
/// closed order changes nothing. Older ones are forgotten: the state of a
/// product that has served a million orders stays this small. That an order
/// is never reserved for again long after its reservation closed is kept by
/// the saga, whose state records each line's outcome in the same transaction.
pub const CLOSED_RESERVATIONS_KEPT: usize = 256;

/// A registered product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Display name, trimmed.
    pub name: String,
    /// Current catalog unit price in cents (always > 0).
    pub price_cents: i64,
    /// Units on hand and free to reserve.
    pub available: i64,
    /// Units reserved for orders that are not yet paid.
    pub reserved: i64,
    /// Units sold (reserved and paid).
    pub sold: i64,
    /// The reservations still held, by order id.
    pub reservations: BTreeMap<Uuid, Reservation>,
    /// The most recently closed reservations (at most
    /// [`CLOSED_RESERVATIONS_KEPT`]), newest last.
    pub recently_closed: VecDeque<(Uuid, Reservation)>,
}

/// Stock held for one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Units held.
    pub quantity: i64,
    /// Where the reservation stands.
    pub status: ReservationStatus,
}

/// Life of a reservation: held, then either given back or sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationStatus {
    /// The units are held for the order.
    Active,
    /// The units went back to the available stock.
    Released,
    /// The units were sold to the order.
    Committed,
}

impl Product {
    /// All units ever stocked: available + reserved + sold, or `None` on overflow.
    pub fn total_stock(&self) -> Option<i64> {
        self.available
            .checked_add(self.reserved)?
            .checked_add(self.sold)
    }

    /// The reservation of `order_id`: held, or closed recently.
    pub fn reservation(&self, order_id: Uuid) -> Option<Reservation> {
        self.reservations.get(&order_id).copied().or_else(|| {
            self.recently_closed
                .iter()
                .rev()
                .find(|(id, _)| *id == order_id)
                .map(|(_, reservation)| *reservation)
        })
    }

    /// Closes the held reservation of `order_id` with `status`, remembering
    /// it among the recently closed ones.
    fn close(&mut self, order_id: Uuid, status: ReservationStatus) {
        if let Some(mut reservation) = self.reservations.remove(&order_id) {
            reservation.status = status;
            if self.recently_closed.len() == CLOSED_RESERVATIONS_KEPT {
                self.recently_closed.pop_front();
            }
            self.recently_closed.push_back((order_id, reservation));
        }
    }
}

/// State of a product stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ProductState {
    /// No event yet: the product does not exist.
    #[default]
    Unregistered,
    /// The product exists.
    Registered(Product),
}

impl ProductState {
    /// The catalog unit price in cents, if the product is registered.
    pub fn price_cents(&self) -> Option<i64> {
        self.product().map(|product| product.price_cents)
    }

    /// The product, if registered.
    pub fn product(&self) -> Option<&Product> {
        match self {
            ProductState::Unregistered => None,
            ProductState::Registered(product) => Some(product),
        }
    }

    /// Whether the product has been registered.
    pub fn is_registered(&self) -> bool {
        self.product().is_some()
    }
}

/// A request to change a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductCommand {
    /// Add a new product to the catalog.
    Register {
        /// Display name; surrounding whitespace is trimmed.
        name: String,
        /// Unit price in cents (> 0).
        price_cents: i64,
        /// Units on hand at registration (>= 0).
        initial_stock: i64,
    },
    /// Add units to the available stock.
    Restock {
        /// Units added (> 0).
        quantity: i64,
    },
    /// Hold units for an order. Keyed by order id: reserving twice for the
    /// same order changes nothing.
    Reserve {
        /// The order the units are held for.
        order_id: Uuid,
        /// Units to hold (> 0).
        quantity: i64,
    },
    /// Give an order's held units back (compensation). Nothing to release
    /// is not an error.
    Release {
        /// The order whose reservation is released.
        order_id: Uuid,
    },
    /// Turn an order's held units into sold units (the order was paid).
    Commit {
        /// The order whose reservation is sold.
        order_id: Uuid,
    },
}

/// Something that happened to a product. Payload field names are a public contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum ProductEvent {
    /// The product was added to the catalog.
    ProductRegistered {
        /// Display name, trimmed.
        name: String,
        /// Unit price in cents.
        price_cents: i64,
        /// Units on hand at registration.
        initial_stock: i64,
    },
    /// Units were added to the available stock.
    ProductRestocked {
        /// Units added.
        quantity: i64,
    },
    /// Units were held for an order (available → reserved).
    StockReserved {
        /// The order.
        order_id: Uuid,
        /// Units held.
        quantity: i64,
    },
    /// An order's held units went back (reserved → available).
    ReservationReleased {
        /// The order.
        order_id: Uuid,
        /// Units given back.
        quantity: i64,
    },
    /// An order's held units were sold (reserved → sold).
    ReservationCommitted {
        /// The order.
        order_id: Uuid,
        /// Units sold.
        quantity: i64,
    },
}

impl ProductEvent {
    /// The order an event concerns, for reservation events.
    pub fn order_id(&self) -> Option<Uuid> {
        match self {
            ProductEvent::ProductRegistered { .. } | ProductEvent::ProductRestocked { .. } => None,
            ProductEvent::StockReserved { order_id, .. }
            | ProductEvent::ReservationReleased { order_id, .. }
            | ProductEvent::ReservationCommitted { order_id, .. } => Some(*order_id),
        }
    }
}

event::domain_event!(
    ProductEvent,
    stream_type = "inventory",
    [
        ProductRegistered,
        ProductRestocked,
        StockReserved,
        ReservationReleased,
        ReservationCommitted
    ]
);

/// Why a product command was refused. Messages are shown to API users.
#[derive(thiserror::Error, Debug, PartialEq, Eq, Clone)]
pub enum ProductError {
    /// Register on a product that already exists.
    #[error("product is already registered")]
    AlreadyRegistered,
    /// A command other than register on a product that does not exist.
    #[error("product is not registered")]
    NotRegistered,
    /// The name is empty or only whitespace.
    #[error("name must not be empty")]
    EmptyName,
    /// The trimmed name is longer than `max` characters.
    #[error("name must be at most {max} characters")]
    NameTooLong {
        /// The limit, [`MAX_NAME_CHARS`].
        max: usize,
    },
    /// The price is zero or negative.
    #[error("price_cents must be greater than 0 (got {0})")]
    NonPositivePrice(i64),
    /// The initial stock is negative.
    #[error("initial_stock must be 0 or greater (got {0})")]
    NegativeInitialStock(i64),
    /// The restock quantity is zero or negative.
    #[error("quantity must be greater than 0 (got {0})")]
    NonPositiveQuantity(i64),
    /// The stock would exceed what an i64 can count.
    #[error("quantity is too large: the product's stock would exceed {}", i64::MAX)]
    StockOverflow,
    /// Fewer units are available than the reservation asks for.
    #[error("not enough stock: requested {requested}, available {available}")]
    InsufficientStock {
        /// Units asked for.
        requested: i64,
        /// Units free to reserve.
        available: i64,
    },
    /// Commit of a reservation that is not held (never made, or released).
    #[error("order {0} holds no reservation on this product")]
    NoActiveReservation(Uuid),
}

/// Checks `command` against `state` and returns the events it produces.
///
/// Rules are checked in this order, the first broken one is reported.
/// Register: not yet registered, name (trimmed) non-empty and at most
/// [`MAX_NAME_CHARS`] characters, `price_cents > 0`, `initial_stock >= 0`.
/// Restock: registered, `quantity > 0`, total stock stays within `i64`.
pub fn decide(
    state: &ProductState,
    command: ProductCommand,
) -> Result<Vec<ProductEvent>, ProductError> {
    match command {
        ProductCommand::Register {
            name,
            price_cents,
            initial_stock,
        } => register(state, &name, price_cents, initial_stock),
        ProductCommand::Restock { quantity } => restock(state, quantity),
        ProductCommand::Reserve { order_id, quantity } => reserve(state, order_id, quantity),
        ProductCommand::Release { order_id } => release(state, order_id),
        ProductCommand::Commit { order_id } => commit(state, order_id),
    }
}

fn reserve(
    state: &ProductState,
    order_id: Uuid,
    quantity: i64,
) -> Result<Vec<ProductEvent>, ProductError> {
    let product = state.product().ok_or(ProductError::NotRegistered)?;
    if product.reservation(order_id).is_some() {
        return Ok(vec![]);
    }
    if quantity <= 0 {
        return Err(ProductError::NonPositiveQuantity(quantity));
    }
    if product.available < quantity {
        return Err(ProductError::InsufficientStock {
            requested: quantity,
            available: product.available,
        });
    }
    Ok(vec![ProductEvent::StockReserved { order_id, quantity }])
}

fn release(state: &ProductState, order_id: Uuid) -> Result<Vec<ProductEvent>, ProductError> {
    let product = state.product().ok_or(ProductError::NotRegistered)?;
    Ok(match product.reservation(order_id) {
        Some(Reservation {
            quantity,
            status: ReservationStatus::Active,
        }) => vec![ProductEvent::ReservationReleased { order_id, quantity }],
        _ => vec![],
    })
}

fn commit(state: &ProductState, order_id: Uuid) -> Result<Vec<ProductEvent>, ProductError> {
    let product = state.product().ok_or(ProductError::NotRegistered)?;
    match product.reservation(order_id) {
        Some(Reservation {
            quantity,
            status: ReservationStatus::Active,
        }) => Ok(vec![ProductEvent::ReservationCommitted {
            order_id,
            quantity,
        }]),
        Some(Reservation {
            status: ReservationStatus::Committed,
            ..
        }) => Ok(vec![]),
        _ => Err(ProductError::NoActiveReservation(order_id)),
    }
}

fn register(
    state: &ProductState,
    name: &str,
    price_cents: i64,
    initial_stock: i64,
) -> Result<Vec<ProductEvent>, ProductError> {
    if state.is_registered() {
        return Err(ProductError::AlreadyRegistered);
    }
    let name = name.trim();
    if name.is_empty() {
        return Err(ProductError::EmptyName);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ProductError::NameTooLong {
            max: MAX_NAME_CHARS,
        });
    }
    if price_cents <= 0 {
        return Err(ProductError::NonPositivePrice(price_cents));
    }
    if initial_stock < 0 {
        return Err(ProductError::NegativeInitialStock(initial_stock));
    }
    Ok(vec![ProductEvent::ProductRegistered {
        name: name.to_owned(),
        price_cents,
        initial_stock,
    }])
}

fn restock(state: &ProductState, quantity: i64) -> Result<Vec<ProductEvent>, ProductError> {
    let product = state.product().ok_or(ProductError::NotRegistered)?;
    if quantity <= 0 {
        return Err(ProductError::NonPositiveQuantity(quantity));
    }
    product
        .total_stock()
        .and_then(|total| total.checked_add(quantity))
        .ok_or(ProductError::StockOverflow)?;
    Ok(vec![ProductEvent::ProductRestocked { quantity }])
}

/// Applies one recorded event to the state.
///
/// Events are facts, so this never fails. An event that cannot apply to the
/// state (only possible with a corrupted log, since [`decide`] never emits one)
/// leaves the state unchanged; stock arithmetic saturates instead of overflowing.
pub fn evolve(state: ProductState, event: &ProductEvent) -> ProductState {
    let mut product = match (state, event) {
        (
            ProductState::Unregistered,
            ProductEvent::ProductRegistered {
                name,
                price_cents,
                initial_stock,
            },
        ) => {
            return ProductState::Registered(Product {
                name: name.clone(),
                price_cents: *price_cents,
                available: *initial_stock,
                reserved: 0,
                sold: 0,
                reservations: BTreeMap::new(),
                recently_closed: VecDeque::new(),
            })
        }
        (ProductState::Registered(product), _) => product,
        (state, _) => return state,
    };
    match event {
        ProductEvent::ProductRegistered { .. } => {}
        ProductEvent::ProductRestocked { quantity } => {
            product.available = product.available.saturating_add(*quantity);
        }
        ProductEvent::StockReserved { order_id, quantity } => {
            product.available = product.available.saturating_sub(*quantity);
            product.reserved = product.reserved.saturating_add(*quantity);
            product.reservations.insert(
                *order_id,
                Reservation {
                    quantity: *quantity,
                    status: ReservationStatus::Active,
                },
            );
        }
        ProductEvent::ReservationReleased { order_id, quantity } => {
            product.reserved = product.reserved.saturating_sub(*quantity);
            product.available = product.available.saturating_add(*quantity);
            product.close(*order_id, ReservationStatus::Released);
        }
        ProductEvent::ReservationCommitted { order_id, quantity } => {
            product.reserved = product.reserved.saturating_sub(*quantity);
            product.sold = product.sold.saturating_add(*quantity);
            product.close(*order_id, ReservationStatus::Committed);
        }
    }
    ProductState::Registered(product)
}

#[cfg(test)]
mod tests;
