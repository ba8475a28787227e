//! Integration tests of the payment gateway simulator: real Postgres, the
//! app on port 0, requests over HTTP.

mod charges;
mod faults;
mod helpers;
mod idempotency;
mod ledger;
mod refunds;
mod startup;
mod tokens;
