//! The product aggregate: catalog entry and stock of one product.
//!
//! Stream type `"inventory"`; the stream id is the product id (a `Uuid`).

use serde::{Deserialize, Serialize};

use crate::event::{self, DomainEvent, EventDecodeError};

/// Longest product name accepted, in characters (Unicode scalar values), after trimming.
pub const MAX_NAME_CHARS: usize = 200;

/// A registered product.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl Product {
    /// All units ever stocked: available + reserved + sold, or `None` on overflow.
    pub fn total_stock(&self) -> Option<i64> {
        self.available
            .checked_add(self.reserved)?
            .checked_add(self.sold)
    }
}

/// State of a product stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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
}

impl ProductEvent {
    /// Every event type of the `"inventory"` stream, as stored in the log.
    pub const EVENT_TYPES: &'static [&'static str] = &["ProductRegistered", "ProductRestocked"];
}

impl DomainEvent for ProductEvent {
    const STREAM_TYPE: &'static str = "inventory";

    fn event_type(&self) -> &'static str {
        match self {
            ProductEvent::ProductRegistered { .. } => "ProductRegistered",
            ProductEvent::ProductRestocked { .. } => "ProductRestocked",
        }
    }

    fn schema_version(&self) -> i32 {
        event::SCHEMA_VERSION
    }

    fn to_payload(&self) -> serde_json::Value {
        event::encode_payload(self)
    }

    fn from_parts(
        event_type: &str,
        schema_version: i32,
        payload: &serde_json::Value,
    ) -> Result<Self, EventDecodeError> {
        event::decode_parts(
            Self::STREAM_TYPE,
            Self::EVENT_TYPES,
            event_type,
            schema_version,
            payload,
        )
    }
}

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
    match (state, event) {
        (
            ProductState::Unregistered,
            ProductEvent::ProductRegistered {
                name,
                price_cents,
                initial_stock,
            },
        ) => ProductState::Registered(Product {
            name: name.clone(),
            price_cents: *price_cents,
            available: *initial_stock,
            reserved: 0,
            sold: 0,
        }),
        (ProductState::Registered(mut product), ProductEvent::ProductRestocked { quantity }) => {
            product.available = product.available.saturating_add(*quantity);
            ProductState::Registered(product)
        }
        (state @ ProductState::Registered(_), ProductEvent::ProductRegistered { .. })
        | (state @ ProductState::Unregistered, ProductEvent::ProductRestocked { .. }) => state,
    }
}

#[cfg(test)]
mod tests;
