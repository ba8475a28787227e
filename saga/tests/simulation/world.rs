//! The database as the saga worker and the command API see it: the
//! streams (folded with the real `decide` / `evolve`), the event log and
//! its outbox, the saga rows and the processed event ids. A transaction is
//! a copy of the tables plus the events it appends; commit replaces the
//! tables and appends to the log, a crash just drops the copy.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use domain::aggregate::{Aggregate, Order, Payment, Product};
use domain::order::{OrderState, OrderStatus};
use domain::payment::PaymentState;
use domain::product::ProductState;
use domain::DomainEvent;
use eventstore::{EventEnvelope, Metadata};
use saga::store::SagaRow;
use uuid::Uuid;

/// One stream: its version and folded state.
#[derive(Debug, Clone, Default)]
pub struct Stream<S> {
    /// Events so far.
    pub version: i64,
    /// The fold of them.
    pub state: S,
}

/// A saga row and when the effect runner looks at it next.
#[derive(Debug, Clone)]
pub struct SagaEntry {
    /// The row.
    pub row: SagaRow,
    /// `next_action_at`.
    pub next_action_at: Option<DateTime<Utc>>,
}

/// Everything a transaction can read and write.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    pub products: BTreeMap<Uuid, Stream<ProductState>>,
    pub orders: BTreeMap<Uuid, Stream<OrderState>>,
    pub payments: BTreeMap<Uuid, Stream<PaymentState>>,
    pub sagas: BTreeMap<Uuid, SagaEntry>,
    /// `saga.processed_events`.
    pub processed: BTreeSet<Uuid>,
    /// Event ids handed out so far (ids of a rolled-back transaction are
    /// handed out again: nobody saw them).
    pub events_issued: u128,
}

/// An aggregate kept in [`Tables`].
pub trait Table: Aggregate {
    /// Its streams.
    fn table(tables: &mut Tables) -> &mut BTreeMap<Uuid, Stream<Self::State>>;
}

impl Table for Product {
    fn table(tables: &mut Tables) -> &mut BTreeMap<Uuid, Stream<Self::State>> {
        &mut tables.products
    }
}

impl Table for Order {
    fn table(tables: &mut Tables) -> &mut BTreeMap<Uuid, Stream<Self::State>> {
        &mut tables.orders
    }
}

impl Table for Payment {
    fn table(tables: &mut Tables) -> &mut BTreeMap<Uuid, Stream<Self::State>> {
        &mut tables.payments
    }
}

/// The committed database.
#[derive(Debug, Default)]
pub struct Db {
    pub tables: Tables,
    /// The event log (and, from `Bus::published` on, the outbox).
    pub log: Vec<EventEnvelope>,
}

/// An open transaction.
#[derive(Debug)]
pub struct Tx {
    pub tables: Tables,
    pub appended: Vec<EventEnvelope>,
    pub now: DateTime<Utc>,
}

impl Db {
    /// Begins a transaction at `now`.
    pub fn begin(&self, now: DateTime<Utc>) -> Tx {
        Tx {
            tables: self.tables.clone(),
            appended: Vec::new(),
            now,
        }
    }

    /// Commits `tx`: its tables become the database's, its events join the log.
    pub fn commit(&mut self, tx: Tx) -> usize {
        self.tables = tx.tables;
        let count = tx.appended.len();
        for mut event in tx.appended {
            event.global_position = i64::try_from(self.log.len()).unwrap() + 1;
            self.log.push(event);
        }
        count
    }
}

impl Tx {
    /// Runs `command` on stream `stream_id` as `eventstore::aggregate::execute`
    /// does: load, the real `decide`, append what it returns (nothing if it
    /// returns nothing). `Err` is the domain's refusal.
    pub fn execute<A: Table>(
        &mut self,
        stream_id: Uuid,
        command: A::Command,
        metadata: &Metadata,
    ) -> Result<Vec<EventEnvelope>, A::Error> {
        let mut stream = A::table(&mut self.tables)
            .get(&stream_id)
            .cloned()
            .unwrap_or_default();
        let events = A::decide(&stream.state, command)?;
        if events.is_empty() {
            return Ok(vec![]);
        }
        let mut envelopes = Vec::with_capacity(events.len());
        for event in &events {
            stream.state = A::evolve(stream.state, event);
            stream.version += 1;
            self.tables.events_issued += 1;
            envelopes.push(EventEnvelope {
                event_id: Uuid::from_u128((0xE << 124) | self.tables.events_issued),
                stream_id,
                stream_type: <A::Event as DomainEvent>::STREAM_TYPE.to_owned(),
                stream_version: stream.version,
                global_position: 0,
                event_type: event.event_type().to_owned(),
                schema_version: event.schema_version(),
                recorded_at: self.now,
                payload: event.to_payload(),
                metadata: metadata.clone(),
            });
        }
        A::table(&mut self.tables).insert(stream_id, stream);
        self.appended.extend(envelopes.iter().cloned());
        Ok(envelopes)
    }

    /// The saga row of `order_id`.
    pub fn saga(&self, order_id: Uuid) -> Option<SagaRow> {
        self.tables.sagas.get(&order_id).map(|e| e.row.clone())
    }

    /// `store::save`.
    pub fn save(&mut self, row: SagaRow, next_action_at: Option<DateTime<Utc>>) {
        self.tables.sagas.insert(
            row.saga.order_id,
            SagaEntry {
                row,
                next_action_at,
            },
        );
    }

    /// The order's status, if placed.
    pub fn order_status(&self, order_id: Uuid) -> Option<OrderStatus> {
        self.tables.orders.get(&order_id)?.state.status()
    }
}
