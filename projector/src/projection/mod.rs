//! The read-model projections.
//!
//! Every read model is one row per stream, keyed by the stream id, carrying
//! the version of the last event folded into it. A projection is a pure fold
//! over that row ([`ReadModel::evolve`]); loading, storing and the
//! next-version rule are written once, generically: [`Rows`] holds rows in
//! memory and writes them back with one multi-row upsert (live) or `COPY`
//! (replay), and [`crate::apply`] decides which events are new.

mod event;
mod orders;
mod payments;
mod products;
mod rows;
mod sql;
mod user_orders;

use std::fmt;
use std::marker::PhantomData;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::apply::ApplyError;

pub use event::{Decoded, Known};
pub use orders::{OrderRow, OrdersProjection};
pub use payments::{PaymentRow, PaymentsProjection};
pub use products::{ProductRow, ProductsProjection};
pub use rows::Rows;
pub use sql::{Cell, Column, ColumnType};
pub use user_orders::{UserOrderRow, UserOrdersProjection};

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

/// What a projection is: its name, table, inputs and columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Its name, as given to `projector replay --projection`.
    pub name: &'static str,
    /// The table it owns (without schema): one row per stream.
    pub table: &'static str,
    /// The stream types whose events it consumes.
    pub stream_types: &'static [&'static str],
    /// The key column, holding the stream id (the first of `columns`).
    pub key: &'static str,
    /// Every column of the table, the key first, `version` among them.
    pub columns: &'static [Column],
    /// Another unique column besides the key, if any: a row that would
    /// collide with another stream's row on it is not written (only a
    /// corrupted log can produce one).
    pub also_unique: Option<&'static str>,
}

/// A read model as a pure fold over one row per stream.
pub trait ReadModel: Send + Sync + 'static {
    /// The row, as stored (field names are the column names).
    type Row: Clone + Send + Sync + Unpin + for<'r> sqlx::FromRow<'r, PgRow> + 'static;

    /// What it is.
    const SPEC: Spec;

    /// The row's version: the stream version of the last event folded in.
    fn version(row: &Self::Row) -> i64;

    /// Folds `event`, the next event of the row's stream, into `row` (`None`
    /// if the stream has no row yet). `None` out means the stream still has
    /// no row (an event that creates nothing).
    fn evolve(row: Option<Self::Row>, event: &Decoded, known: &Known) -> Option<Self::Row>;

    /// The row's values in the order of [`Spec::columns`].
    fn cells<'a>(row: &'a Self::Row, out: &mut Vec<Cell<'a>>);
}

/// A projection's rows held in memory while a batch (or a replay) is folded.
#[async_trait]
pub trait Fold: Send {
    /// What it folds.
    fn spec(&self) -> &'static Spec;

    /// Reads (and locks until the transaction ends) the rows of `ids` that are
    /// not in memory yet; ids without a row are at version 0.
    async fn load(
        &mut self,
        conn: &mut PgConnection,
        schema: Schema,
        ids: &[Uuid],
    ) -> Result<(), sqlx::Error>;

    /// The version folded so far for `stream_id` (0 if nothing).
    fn version(&self, stream_id: Uuid) -> i64;

    /// Folds `event`, which must be the next version of its stream (the
    /// caller checks): a decoding failure is returned and changes nothing.
    fn apply(&mut self, event: &Decoded) -> Result<(), ApplyError>;

    /// Writes every row changed since the last store with multi-row upserts
    /// that never move a row back to an older version.
    async fn store(&mut self, conn: &mut PgConnection, schema: Schema) -> Result<(), sqlx::Error>;

    /// Loads every row into the (empty, index-free) table of `schema` with
    /// `COPY`; returns how many rows were written.
    async fn copy_into(
        &mut self,
        conn: &mut PgConnection,
        schema: Schema,
    ) -> Result<u64, sqlx::Error>;
}

/// A read model built from the events of some stream types.
pub trait Projection: Send + Sync + fmt::Debug {
    /// What it is.
    fn spec(&self) -> &'static Spec;

    /// An empty in-memory fold of its rows.
    fn fold(&self) -> Box<dyn Fold>;

    /// Its name, as given to `projector replay --projection`.
    fn name(&self) -> &'static str {
        self.spec().name
    }

    /// The tables it owns (without schema).
    fn tables(&self) -> &'static [&'static str] {
        std::slice::from_ref(&self.spec().table)
    }

    /// The stream types whose events it consumes.
    fn stream_types(&self) -> &'static [&'static str] {
        self.spec().stream_types
    }

    /// Whether it consumes events of `stream_type`.
    fn handles(&self, stream_type: &str) -> bool {
        self.stream_types().contains(&stream_type)
    }
}

/// The [`Projection`] of a [`ReadModel`].
pub struct Model<M>(PhantomData<fn() -> M>);

impl<M> Model<M> {
    const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<M: ReadModel> fmt::Debug for Model<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Projection({})", M::SPEC.name)
    }
}

impl<M: ReadModel> Projection for Model<M> {
    fn spec(&self) -> &'static Spec {
        &M::SPEC
    }

    fn fold(&self) -> Box<dyn Fold> {
        Box::new(Rows::<M>::default())
    }
}

static PRODUCTS: Model<ProductsProjection> = Model::new();
static ORDERS: Model<OrdersProjection> = Model::new();
static USER_ORDERS: Model<UserOrdersProjection> = Model::new();
static PAYMENTS: Model<PaymentsProjection> = Model::new();
static ALL: [&(dyn Projection + 'static); 4] = [&PRODUCTS, &ORDERS, &USER_ORDERS, &PAYMENTS];

/// Every projection, in the order they are applied (and their tables locked).
pub fn all() -> &'static [&'static dyn Projection] {
    &ALL
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

    #[test]
    fn every_spec_starts_with_its_key_and_has_a_version() {
        for projection in all() {
            let spec = projection.spec();
            assert_eq!(spec.columns[0].name, spec.key, "{}", spec.name);
            assert!(spec.columns.iter().any(|c| c.name == "version"));
        }
    }
}
