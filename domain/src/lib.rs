//! The pure domain of the order backend: aggregates, their commands and events,
//! and the `decide` / `evolve` functions that give them behaviour.
//!
//! Nothing in this crate performs I/O, reads the clock or draws random numbers:
//! everything a decision needs (ids, catalog prices, timestamps) arrives with the
//! command. Each aggregate is a state type plus two synchronous functions:
//!
//! - `decide(&State, Command) -> Result<Vec<Event>, Error>` checks the business
//!   rules and says what happened;
//! - `evolve(State, &Event) -> State` folds one recorded fact into the state.
//!
//! Rebuilding an aggregate is `events.iter().fold(State::default(), evolve)`.
//!
//! Events are stored and published as `(event_type, schema_version, payload)`
//! through the [`DomainEvent`] trait.

#![warn(missing_docs)]

pub mod aggregate;
pub mod event;
pub mod order;
pub mod payment;
pub mod product;
pub mod saga;

#[cfg(test)]
pub(crate) mod testing;

pub use aggregate::Aggregate;
pub use event::{DomainEvent, EventDecodeError};
