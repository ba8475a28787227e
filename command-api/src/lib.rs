//! The command side of the order backend: an axum HTTP API that turns
//! requests into domain commands and appends the resulting events to the
//! PostgreSQL event log (events and outbox rows in one transaction).
//!
//! Every command runs the same path (see [`handling`]): queued for the
//! writer of its stream, it is decided with the pure domain together with
//! the other commands queued meanwhile, and appended with them in one
//! transaction (group commit), with the response recorded under its
//! `Idempotency-Key` if it has one. A command whose stream another process
//! moved meanwhile is retried a few times; `If-Match` turns that into 412.
//!
//! Public surface for the binary and the tests: [`Config`], [`AppState`],
//! [`router`] and [`run`].

#![warn(missing_docs)]

pub mod config;
pub mod correlation;
pub mod docs;
pub mod error;
pub mod extract;
pub mod handling;
pub mod idempotency;
pub mod routes;
mod startup;
mod state;

pub use config::Config;
pub use error::ApiError;
pub use handling::writer::WriterSettings;
pub use startup::{openapi, router, run};
pub use state::AppState;
