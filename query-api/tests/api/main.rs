//! Integration tests of the query API against a real PostgreSQL: each test
//! has its own database and its own server on port 0, connected as the
//! SELECT-only query role; read models are seeded directly as their owner.

mod availability;
mod errors;
mod helpers;
mod min_version;
mod orders;
mod payments;
mod products;
mod read_only;
