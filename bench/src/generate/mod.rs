//! Generates a realistic event log fast: every event is what the real system
//! would have written, because each one comes from the domain's own `decide`
//! on the state folded so far, and every append goes through
//! [`eventstore::append`] (events, outbox rows, dense versions).
//!
//! To be fast it commits waves of orders in one transaction and appends each
//! stream's share of a wave in one call (so the events of one call share
//! their metadata, as a command that appends several events does). Within a
//! wave the order streams are written before the payments and the products;
//! each stream's own order is the real one. Most orders are paid and
//! confirmed, some are declined and cancelled (stock released); one product is
//! "hot": its stream holds [`LogSpec::hot_stream_share`] of the log's events, so it
//! grows with the log like a popular product's does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use domain::aggregate::{Aggregate, Order, Payment, Product};
use domain::order::{OrderCommand, RequestedLine};
use domain::payment::{payment_id_for, PaymentCommand};
use domain::product::ProductCommand;
use domain::DomainEvent;
use eventstore::{append, ExpectedVersion, Metadata, NewEvent};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Orders committed per transaction.
const WAVE: usize = 250;
/// Concurrent generating transactions (each with its own cold products).
const WORKERS: usize = 3;
/// Share of the hot product's events among those of an order that has it
/// (order 3 + payment 2 + hot product 2 + about one other line of 2, over 8).
const HOT_EVENTS_PER_HOT_ORDER: f64 = 2.0 / 8.0;

/// What to generate.
#[derive(Debug, Clone)]
pub struct LogSpec {
    /// Events to append, at least (whole orders are written).
    pub events: usize,
    /// Products in the catalog besides the hot one.
    pub products: usize,
    /// Share of the log's events that are in the hot product's stream.
    pub hot_stream_share: f64,
    /// Share of orders whose payment is declined.
    pub declined_share: f64,
}

impl LogSpec {
    /// A log of `events` events with the default mix.
    pub fn new(events: usize) -> Self {
        Self {
            events,
            // Small logs get fewer products, so most of their events are orders'.
            products: (events / 20).clamp(10, 1000),
            hot_stream_share: 0.1,
            declined_share: 0.05,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, Default)]
pub struct GeneratedLog {
    /// Events appended.
    pub events: usize,
    /// Every order placed.
    pub orders: Vec<Uuid>,
    /// Every product (the hot one first).
    pub products: Vec<Uuid>,
    /// Events in the hot product's stream.
    pub hot_stream_events: i64,
    /// Time taken.
    pub elapsed: Duration,
}

impl GeneratedLog {
    /// The hot product.
    pub fn hot_product(&self) -> Uuid {
        self.products[0]
    }
}

/// Appends a log following `spec` to the database behind `pool`.
pub async fn generate(pool: &PgPool, spec: &LogSpec) -> anyhow::Result<GeneratedLog> {
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (pool, spec) = (pool.clone(), spec.clone());
        workers.push(tokio::spawn(async move {
            let mut writer = Writer::new(worker, &spec);
            writer.run(&pool, &spec).await?;
            anyhow::Ok(writer)
        }));
    }
    let mut log = GeneratedLog::default();
    for worker in workers {
        let writer = worker.await.context("generator panicked")??;
        log.events += writer.events;
        log.orders.extend(writer.orders);
        if let Some(hot) = writer.hot {
            log.hot_stream_events = writer.products[&hot].1;
            log.products.insert(0, hot);
        }
        log.products.extend(writer.cold);
    }
    log.elapsed = started.elapsed();
    Ok(log)
}

/// One generating connection: its products' states and versions.
struct Writer {
    rng: StdRng,
    /// State and version of each product stream this writer owns.
    products: HashMap<Uuid, (<Product as Aggregate>::State, i64)>,
    hot: Option<Uuid>,
    cold: Vec<Uuid>,
    /// Whether this writer owns the hot product (then every order of it has a line for it).
    owns_hot: bool,
    events: usize,
    target: usize,
    orders: Vec<Uuid>,
}

/// One order's plan within a wave.
struct Planned {
    order_id: Uuid,
    lines: Vec<(Uuid, i64)>,
    declined: bool,
}

impl Writer {
    fn new(worker: usize, spec: &LogSpec) -> Self {
        // Worker 0 owns the hot product and puts it in each of its orders;
        // its share of the log is what makes the hot stream as long as asked.
        let hot_worker_share = (spec.hot_stream_share / HOT_EVENTS_PER_HOT_ORDER).min(1.0);
        let share = if worker == 0 {
            hot_worker_share
        } else {
            (1.0 - hot_worker_share) / (WORKERS - 1) as f64
        };
        Self {
            rng: StdRng::seed_from_u64(worker as u64 + 1),
            products: HashMap::new(),
            hot: None,
            cold: Vec::new(),
            owns_hot: worker == 0,
            events: 0,
            target: (spec.events as f64 * share).ceil() as usize,
            orders: Vec::new(),
        }
    }

    async fn run(&mut self, pool: &PgPool, spec: &LogSpec) -> anyhow::Result<()> {
        let mut tx = pool.begin().await?;
        if self.owns_hot {
            self.hot = Some(self.register(&mut tx, "Hot product").await?);
        }
        for n in 0..spec.products.div_ceil(WORKERS) {
            let id = self.register(&mut tx, &format!("Product {n}")).await?;
            self.cold.push(id);
        }
        tx.commit().await?;
        while self.events < self.target {
            // About 8 events per order: do not overshoot small targets by a whole wave.
            let size = ((self.target - self.events) / 8).clamp(1, WAVE);
            let wave: Vec<Planned> = (0..size).map(|_| self.plan(spec)).collect();
            let mut tx = pool.begin().await?;
            self.write_wave(&mut tx, &wave).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    fn plan(&mut self, spec: &LogSpec) -> Planned {
        let mut lines = Vec::new();
        if let Some(hot) = self.hot {
            lines.push((hot, 1));
        }
        let wanted = self.rng.gen_range(1..=2);
        while lines.len() < wanted && !self.cold.is_empty() {
            let product = self.cold[self.rng.gen_range(0..self.cold.len())];
            if !lines.iter().any(|(p, _)| *p == product) {
                lines.push((product, self.rng.gen_range(1..=3)));
            }
        }
        Planned {
            order_id: Uuid::now_v7(),
            lines,
            declined: self.rng.gen_bool(spec.declined_share),
        }
    }

    async fn register(&mut self, conn: &mut PgConnection, name: &str) -> anyhow::Result<Uuid> {
        let id = Uuid::now_v7();
        let price_cents = self.rng.gen_range(100..10_000);
        let command = ProductCommand::Register {
            name: name.to_owned(),
            price_cents,
            initial_stock: 100_000_000,
        };
        self.products.insert(id, Default::default());
        self.product(conn, id, vec![command], Uuid::now_v7())
            .await?;
        Ok(id)
    }

    /// Writes a wave: each order's stream, then each payment's, then each
    /// product's reservations and their outcome.
    async fn write_wave(
        &mut self,
        conn: &mut PgConnection,
        wave: &[Planned],
    ) -> anyhow::Result<()> {
        let mut per_product: HashMap<Uuid, Vec<ProductCommand>> = HashMap::new();
        for order in wave {
            let command_id = Uuid::now_v7();
            let payment_id = payment_id_for(order.order_id);
            let prices: HashMap<Uuid, i64> = order
                .lines
                .iter()
                .map(|(p, _)| (*p, self.products[p].0.price_cents().expect("registered")))
                .collect();
            let total: i64 = order.lines.iter().map(|(p, q)| prices[p] * q).sum();
            let outcome = if order.declined {
                OrderCommand::Cancel {
                    reason: "payment declined: card_declined".into(),
                    payment_captured: false,
                }
            } else {
                OrderCommand::Confirm { payment_id }
            };
            let place = OrderCommand::Place {
                user_id: format!("user-{}", self.rng.gen_range(0..10_000)),
                lines: order
                    .lines
                    .iter()
                    .map(|(product_id, quantity)| RequestedLine {
                        product_id: *product_id,
                        quantity: *quantity,
                    })
                    .collect(),
                payment_token: if order.declined {
                    "tok_decline".into()
                } else {
                    "tok_ok".into()
                },
                prices,
                placed_at: Utc::now(),
            };
            let commands = vec![
                place,
                OrderCommand::MarkAwaitingPayment { payment_id },
                outcome,
            ];
            self.events += write::<Order>(
                conn,
                order.order_id,
                0,
                Default::default(),
                commands,
                command_id,
            )
            .await?
            .1;
            let request = PaymentCommand::Request {
                order_id: order.order_id,
                amount_cents: total,
                currency: "EUR".into(),
                token: "tok_ok".into(),
            };
            let result = if order.declined {
                PaymentCommand::RecordDecline {
                    code: "card_declined".into(),
                }
            } else {
                PaymentCommand::RecordCapture {
                    charge_id: format!("ch_{}", Uuid::new_v4().simple()),
                }
            };
            self.events += write::<Payment>(
                conn,
                payment_id,
                0,
                Default::default(),
                vec![request, result],
                command_id,
            )
            .await?
            .1;
            for (product, quantity) in &order.lines {
                let commands = per_product.entry(*product).or_default();
                commands.push(ProductCommand::Reserve {
                    order_id: order.order_id,
                    quantity: *quantity,
                });
                commands.push(if order.declined {
                    ProductCommand::Release {
                        order_id: order.order_id,
                    }
                } else {
                    ProductCommand::Commit {
                        order_id: order.order_id,
                    }
                });
            }
            self.orders.push(order.order_id);
        }
        let mut products: Vec<_> = per_product.into_iter().collect();
        products.sort_by_key(|(id, _)| *id);
        for (product, commands) in products {
            self.product(conn, product, commands, Uuid::now_v7())
                .await?;
        }
        Ok(())
    }

    async fn product(
        &mut self,
        conn: &mut PgConnection,
        id: Uuid,
        commands: Vec<ProductCommand>,
        command_id: Uuid,
    ) -> anyhow::Result<()> {
        let (state, version) = self.products.remove(&id).expect("known product");
        let (state, appended) =
            write::<Product>(conn, id, version, state, commands, command_id).await?;
        self.events += appended;
        self.products.insert(id, (state, version + appended as i64));
        Ok(())
    }
}

/// Decides `commands` one after another on `state` (at `version`), appends
/// every resulting event in one call and returns the new state and the count.
async fn write<A: Aggregate>(
    conn: &mut PgConnection,
    stream_id: Uuid,
    version: i64,
    mut state: A::State,
    commands: Vec<A::Command>,
    command_id: Uuid,
) -> anyhow::Result<(A::State, usize)> {
    let mut events = Vec::new();
    for command in commands {
        let decided = A::decide(&state, command)
            .map_err(|e| anyhow::anyhow!("generator refused by the domain: {e}"))?;
        for event in &decided {
            state = A::evolve(state, event);
            events.push(NewEvent::from_domain(event));
        }
    }
    let expected = ExpectedVersion::Exact(version);
    let metadata = Metadata::for_command(command_id);
    append(
        conn,
        <A::Event as DomainEvent>::STREAM_TYPE,
        stream_id,
        expected,
        &events,
        &metadata,
    )
    .await?;
    Ok((state, events.len()))
}

#[cfg(test)]
mod tests;
