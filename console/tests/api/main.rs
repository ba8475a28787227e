//! HTTP-level tests of the console against a real PostgreSQL (and Kafka,
//! where a dead letter is parked): each test has its own database and its
//! own console on port 0. The log is seeded through the event store, the
//! saga's reactions come from its real handler, and the read models from
//! the projector's replay.

mod dead_letters;
mod helpers;
mod orders;
mod system;
mod timeline;
