//! One trait over the aggregates, so infrastructure can load any of them
//! from its stream and run a command against it without knowing which.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::DomainEvent;
use crate::{order, payment, product};

/// An aggregate: a state folded from its events, and a pure decision.
pub trait Aggregate {
    /// The state rebuilt from the stream. It serializes so that it can be
    /// kept as a snapshot, and is cheap to clone so that it can be cached.
    type State: Default + Clone + Send + Sync + Serialize + DeserializeOwned + 'static;
    /// What can be asked of it.
    type Command: Send;
    /// What it records.
    type Event: DomainEvent + Send + Sync;
    /// Why it refuses a command.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Version of the state's serialized form. Bump it whenever `State`
    /// changes shape: snapshots of another version are ignored, never misread.
    const STATE_VERSION: i32;

    /// Checks `command` against `state` and returns the events it produces.
    fn decide(state: &Self::State, command: Self::Command)
        -> Result<Vec<Self::Event>, Self::Error>;

    /// Applies one recorded event to the state.
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;
}

/// The product aggregate (stream type `inventory`).
#[derive(Debug, Clone, Copy)]
pub struct Product;

impl Aggregate for Product {
    type State = product::ProductState;
    type Command = product::ProductCommand;
    type Event = product::ProductEvent;
    type Error = product::ProductError;
    const STATE_VERSION: i32 = 1;

    fn decide(
        state: &Self::State,
        command: Self::Command,
    ) -> Result<Vec<Self::Event>, Self::Error> {
        product::decide(state, command)
    }

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        product::evolve(state, event)
    }
}

/// The order aggregate (stream type `orders`).
#[derive(Debug, Clone, Copy)]
pub struct Order;

impl Aggregate for Order {
    type State = order::OrderState;
    type Command = order::OrderCommand;
    type Event = order::OrderEvent;
    type Error = order::OrderError;
    const STATE_VERSION: i32 = 1;

    fn decide(
        state: &Self::State,
        command: Self::Command,
    ) -> Result<Vec<Self::Event>, Self::Error> {
        order::decide(state, command)
    }

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        order::evolve(state, event)
    }
}

/// The payment aggregate (stream type `payments`).
#[derive(Debug, Clone, Copy)]
pub struct Payment;

impl Aggregate for Payment {
    type State = payment::PaymentState;
    type Command = payment::PaymentCommand;
    type Event = payment::PaymentEvent;
    type Error = payment::PaymentError;
    const STATE_VERSION: i32 = 1;

    fn decide(
        state: &Self::State,
        command: Self::Command,
    ) -> Result<Vec<Self::Event>, Self::Error> {
        payment::decide(state, command)
    }

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        payment::evolve(state, event)
    }
}
