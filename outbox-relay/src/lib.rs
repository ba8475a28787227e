//! Library side of the `outbox-relay` crate: the relay's benchmark, so the
//! workspace's benchmark suite can measure the relay alone (the relay itself
//! lives in `eventstore::relay`).

pub mod bench;
