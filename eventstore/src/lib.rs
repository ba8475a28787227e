//! The PostgreSQL event log: append with optimistic concurrency, read a
//! stream, read the whole log in order, and relay the transactional outbox
//! to Kafka. Shared by the write side, the relay and the replay CLI.

pub mod aggregate;
pub mod batch;
pub mod envelope;
pub mod metrics;
pub mod relay;
pub mod repository;
pub mod scan;
pub mod store;
pub mod trace;

pub use batch::{append_batch, StreamAppend, StreamOutcome};
pub use envelope::{EventEnvelope, Metadata, NewEvent};
pub use repository::{LoadRequest, Loaded, Prefetched, Repository, RepositorySettings};
pub use store::{
    append, lock_streams, read_all_after, read_stream, stream_version, AppendError, Appended,
    ExpectedVersion,
};
