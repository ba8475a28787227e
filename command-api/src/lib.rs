//! The command side of the order backend: an axum HTTP API that turns
//! requests into domain commands and appends the resulting events to the
//! PostgreSQL event log (events and outbox rows in one transaction).
//!
//! Every command runs the same loop (see [`handling`]): in one transaction,
//! load the aggregate's stream, decide with the pure domain, append with the
//! loaded version as the expected one and, when the request carries an
//! `Idempotency-Key`, record the response next to the events. Optimistic
//! conflicts are retried a few times; `If-Match` turns them into 412.
//!
//! Public surface for the binary and the tests: [`Config`], [`AppState`],
//! [`router`] and [`run`].

#![warn(missing_docs)]

pub mod config;
pub mod correlation;
pub mod error;
pub mod extract;
pub mod handling;
pub mod idempotency;
pub mod routes;
mod startup;
mod state;

pub use config::Config;
pub use error::ApiError;
pub use startup::{router, run};
pub use state::AppState;
