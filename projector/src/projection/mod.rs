//! The read-model projections and the trait they share.
//!
//! A projection owns one or more tables of the `read` schema, listens to some
//! stream types and keeps, in one row per stream, the version of the last
//! event it applied. [`crate::apply::apply_event`] decides whether an event is
//! new; [`Projection::apply`] only writes its effect.

mod orders;
mod payments;
mod products;
mod user_orders;

use async_trait::async_trait;
use eventstore::EventEnvelope;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::apply::ApplyError;

pub use orders::OrdersProjection;
pub use payments::PaymentsProjection;
pub use products::ProductsProjection;
pub use user_orders::UserOrdersProjection;

/// Which copy of the read models a projection writes to. Schema names come
/// from here only, never from input, so formatting them into SQL is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schema {
    /// The live read models (`read`), served by the query API.
    Live,
    /// The shadow copy (`read_replay`) that replay builds and then swaps in.
    Shadow,
}

impl Schema {
    /// The PostgreSQL schema name.
    pub const fn name(self) -> &'static str {
        match self {
            Schema::Live => "read",
            Schema::Shadow => "read_replay",
        }
    }

    /// `schema.table`, for formatting into SQL.
    pub fn table(self, table: &str) -> String {
        format!("{}.{table}", self.name())
    }
}

/// The table holding one row per stream with its `version` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionTable {
    /// Table name (without schema).
    pub table: &'static str,
    /// Key column holding the stream id.
    pub key: &'static str,
    /// Whether the table has an `updated_at` column to move with the version.
    pub has_updated_at: bool,
}

/// What a projection is: its name, tables, inputs and version bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Its name, as given to `projector replay --projection`.
    pub name: &'static str,
    /// The tables it owns (without schema), in the order they are locked.
    pub tables: &'static [&'static str],
    /// The stream types whose events it consumes.
    pub stream_types: &'static [&'static str],
    /// The table that records, per stream, the last applied version.
    pub version_table: VersionTable,
}

/// A read model built from the events of some stream types.
#[async_trait]
pub trait Projection: Send + Sync + std::fmt::Debug {
    /// What it is.
    fn spec(&self) -> &'static Spec;

    /// Its name, as given to `projector replay --projection`.
    fn name(&self) -> &'static str {
        self.spec().name
    }

    /// The tables it owns (without schema), in the order they are locked.
    fn tables(&self) -> &'static [&'static str] {
        self.spec().tables
    }

    /// The stream types whose events it consumes.
    fn stream_types(&self) -> &'static [&'static str] {
        self.spec().stream_types
    }

    /// The table that records, per stream, the last applied version.
    fn version_table(&self) -> VersionTable {
        self.spec().version_table
    }

    /// Whether it consumes events of `stream_type`.
    fn handles(&self, stream_type: &str) -> bool {
        self.stream_types().contains(&stream_type)
    }

    /// The version of `stream_id` it has applied, locking the row until the
    /// transaction ends; `None` if it has no row for the stream.
    async fn current_version(
        &self,
        conn: &mut PgConnection,
        schema: Schema,
        stream_id: Uuid,
    ) -> Result<Option<i64>, sqlx::Error> {
        let VersionTable { table, key, .. } = self.version_table();
        let sql = format!(
            "SELECT version FROM {} WHERE {key} = $1 FOR UPDATE",
            schema.table(table)
        );
        sqlx::query_scalar(&sql)
            .bind(stream_id)
            .fetch_optional(conn)
            .await
    }

    /// Writes the effect of `event`, which is the next version of its stream
    /// (the caller checked), and sets the row's version to the event's.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: Schema,
        event: &EventEnvelope,
    ) -> Result<(), ApplyError>;

    /// Moves a row's version (and `updated_at`) to `event` without changing
    /// anything else: for events of a stream that do not concern this read
    /// model. Does nothing if the stream has no row.
    async fn advance_version(
        &self,
        conn: &mut PgConnection,
        schema: Schema,
        event: &EventEnvelope,
    ) -> Result<(), ApplyError> {
        let VersionTable {
            table,
            key,
            has_updated_at,
        } = self.version_table();
        let touch = if has_updated_at {
            ", updated_at = $3"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE {} SET version = $2{touch} WHERE {key} = $1 AND version = $2 - 1",
            schema.table(table)
        );
        let mut query = sqlx::query(&sql)
            .bind(event.stream_id)
            .bind(event.stream_version);
        if has_updated_at {
            query = query.bind(event.recorded_at);
        }
        query
            .execute(conn)
            .await
            .map_err(|source| ApplyError::database(format!("advancing {table} version"), source))?;
        Ok(())
    }
}

/// Every projection, in the order they are applied (and their tables locked).
pub fn all() -> &'static [&'static dyn Projection] {
    &[
        &ProductsProjection,
        &OrdersProjection,
        &UserOrdersProjection,
        &PaymentsProjection,
    ]
}

/// The projection called `name`.
pub fn by_name(name: &str) -> Option<&'static dyn Projection> {
    all().iter().copied().find(|p| p.name() == name)
}

/// The names of every projection.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|p| p.name()).collect()
}

/// The projections that consume events of `stream_type`.
pub fn interested_in(stream_type: &str) -> impl Iterator<Item = &'static dyn Projection> + '_ {
    all()
        .iter()
        .copied()
        .filter(move |p| p.handles(stream_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_are_found_by_name_and_stream_type() {
        assert_eq!(names(), ["products", "orders", "user_orders", "payments"]);
        assert_eq!(by_name("orders").map(|p| p.tables()), Some(&["orders"][..]));
        assert!(by_name("nope").is_none());
        let orders: Vec<_> = interested_in("orders").map(|p| p.name()).collect();
        assert_eq!(orders, ["orders", "user_orders"]);
        let payments: Vec<_> = interested_in("payments").map(|p| p.name()).collect();
        assert_eq!(payments, ["payments"]);
        assert_eq!(interested_in("gateway").count(), 0);
        assert_eq!(Schema::Shadow.table("products"), "read_replay.products");
    }
}
