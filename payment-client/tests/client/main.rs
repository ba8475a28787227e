//! The HTTP payment client against the real simulator (over a fresh
//! database): decoding, retries with one idempotency key, timeouts, the
//! circuit breaker, refunds and lookups.

mod breaker;
mod charges;
mod helpers;
mod lookups;
