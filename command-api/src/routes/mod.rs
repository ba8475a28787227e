//! The command endpoints, one module (with its own `router()`) per aggregate.
//!
//! Request bodies refuse unknown fields (400): a client-sent price or id
//! that the contract does not define is an error, never silently used or
//! dropped. `If-Match` always names the version of the stream the command
//! appends to; for creations that stream is new, so only `"0"` can match.

pub mod orders;
pub mod products;
