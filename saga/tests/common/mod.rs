//! A saga worker on a fresh database and topic prefix, with the outbox relay
//! and the payment-gateway simulator beside it, and helpers that write
//! orders and products as the command API would (valid events through the
//! one append path).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use domain::order::{OrderEvent, OrderLine};
use domain::product::{ProductEvent, ProductState};
use domain::saga::SagaPolicy;
use eventstore::relay::{Relay, RelayConfig};
use eventstore::{EventEnvelope, ExpectedVersion, Metadata, NewEvent};
use platform::db::DbConfig;
use saga::consumer::{ConsumerSettings, SagaConsumer};
use saga::effects::{EffectRunner, EffectSettings};
use saga::Handler;
use testkit::{TestDatabase, TestKafka};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Longest wait for anything in these tests.
pub const WAIT: Duration = Duration::from_secs(120);

/// The saga's policy in tests.
pub fn policy() -> SagaPolicy {
    SagaPolicy {
        payment_deadline: chrono::Duration::seconds(30),
        currency: "EUR".into(),
    }
}

/// A product (stock 5) and an order of 2 on it, written through the
/// command path in one transaction; their first events (registered, placed).
pub async fn product_and_order(pool: &sqlx::PgPool) -> (EventEnvelope, EventEnvelope) {
    use domain::order::{OrderCommand, RequestedLine};
    use domain::product::ProductCommand;
    use eventstore::aggregate::execute;
    let (product, order) = (Uuid::now_v7(), Uuid::now_v7());
    let meta = Metadata::for_command(Uuid::now_v7());
    let mut tx = pool.begin().await.unwrap();
    let registered = execute::<domain::aggregate::Product>(
        &mut tx,
        product,
        ProductCommand::Register {
            name: "Mug".into(),
            price_cents: 500,
            initial_stock: 5,
        },
        &meta,
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    let placed = execute::<domain::aggregate::Order>(
        &mut tx,
        order,
        OrderCommand::Place {
            user_id: "alice".into(),
            lines: vec![RequestedLine {
                product_id: product,
                quantity: 2,
            }],
            payment_token: "tok_ok".into(),
            prices: [(product, 500)].into(),
            placed_at: chrono::Utc::now(),
        },
        &meta,
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    tx.commit().await.unwrap();
    (registered.events[0].clone(), placed.events[0].clone())
}

/// Database, topics, relay and gateway; saga workers are started on demand.
pub struct Rig {
    /// The test's database.
    pub db: TestDatabase,
    /// The test's topics.
    pub kafka: TestKafka,
    gateway_url: String,
    shutdown: CancellationToken,
}

impl Rig {
    /// Starts the relay and the gateway on a fresh database and prefix.
    pub async fn start() -> Self {
        testkit::init_logging();
        let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
        let shutdown = CancellationToken::new();
        // Each process has its own pool, as in production.
        let pool = || platform::db::connect_lazy(&DbConfig::new(&db.url)).expect("pool");
        let relay = Relay::new(
            pool(),
            kafka.config.clone(),
            RelayConfig {
                poll_interval_ms: 100,
                ..RelayConfig::default()
            },
        )
        .expect("relay");
        let stop = shutdown.clone();
        tokio::spawn(async move { relay.run(stop).await });
        let gateway = payment_gateway::router(payment_gateway::AppState::new(
            pool(),
            payment_gateway::Behaviour {
                latency: Duration::ZERO,
                failure_rate: 0.0,
                slow_response: Duration::from_millis(500),
            },
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(platform::http::serve(listener, gateway, shutdown.clone()));
        Self {
            db,
            kafka,
            gateway_url,
            shutdown,
        }
    }

    /// The consumer settings of this rig's group, with `tune` applied.
    pub fn settings(&self) -> ConsumerSettings {
        ConsumerSettings {
            group_id: format!("{}saga", self.kafka.config.topic_prefix),
            max_attempts: 3,
            retry_base: Duration::from_millis(20),
            retry_max: Duration::from_millis(200),
            ..ConsumerSettings::default()
        }
    }

    /// Starts a saga worker (consumer and effect runner); stop it by
    /// cancelling the returned token, or abort its task to crash it.
    pub fn start_worker(&self, settings: ConsumerSettings) -> Worker {
        let mut db = DbConfig::new(&self.db.url);
        db.max_connections = saga::config::pool_size(db.max_connections, &settings);
        let pool = platform::db::connect_lazy(&db).expect("pool");
        let handler = Arc::new(Handler::new(pool.clone(), policy()));
        let mut provider = payment_client::ProviderConfig::new(self.gateway_url.clone());
        provider.backoff_base_ms = 20;
        provider.backoff_max_ms = 100;
        let client = payment_client::HttpPaymentProvider::new(provider).expect("payment client");
        let runner = EffectRunner::new(
            pool.clone(),
            handler.clone(),
            Arc::new(client),
            EffectSettings {
                tick: Duration::from_millis(100),
                ..EffectSettings::default()
            },
        );
        let consumer =
            SagaConsumer::new(pool, &self.kafka.config, handler, settings, runner.waker())
                .expect("saga consumer");
        let stop = self.shutdown.child_token();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let runner = tokio::spawn(runner.run(stop.clone()));
            consumer.run(stop).await;
            runner.abort();
        });
        Worker { stop: token, task }
    }

    /// Registers `count` products with `stock` each.
    pub async fn products(&self, count: usize, stock: i64) -> Vec<Uuid> {
        let mut tx = self.db.pool.begin().await.unwrap();
        let mut ids = Vec::new();
        for n in 0..count {
            let id = Uuid::now_v7();
            let registered = ProductEvent::ProductRegistered {
                name: format!("Product {n}"),
                price_cents: 100,
                initial_stock: stock,
            };
            append(&mut tx, "inventory", id, 0, &registered).await;
            ids.push(id);
        }
        tx.commit().await.unwrap();
        ids
    }

    /// Places `count` orders of one or two lines over `products` (paid with
    /// `tok_ok`) and returns their ids.
    pub async fn orders(&self, count: usize, products: &[Uuid]) -> Vec<Uuid> {
        let mut ids = Vec::new();
        for chunk in (0..count).collect::<Vec<_>>().chunks(100) {
            let mut tx = self.db.pool.begin().await.unwrap();
            for &n in chunk {
                let id = Uuid::now_v7();
                let lines = (0..1 + n % 2)
                    .map(|i| OrderLine {
                        product_id: products[(n + i) % products.len()],
                        quantity: 1,
                        unit_price_cents: 100,
                    })
                    .collect::<Vec<_>>();
                append(&mut tx, "orders", id, 0, &placed(lines)).await;
                ids.push(id);
            }
            tx.commit().await.unwrap();
        }
        ids
    }

    /// Waits until the relay has published everything in the outbox.
    pub async fn relayed(&self) {
        testkit::eventually("the outbox is drained", WAIT, || async {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.outbox")
                .fetch_one(&self.db.pool)
                .await
                .unwrap();
            (left == 0).then_some(())
        })
        .await;
    }

    /// Waits until `count` sagas have started (their `OrderPlaced` is handled).
    pub async fn started(&self, count: usize) {
        testkit::eventually("every saga has started", WAIT, || async {
            let started = self.count("SELECT count(*) FROM saga.order_sagas").await;
            (started as usize >= count).then_some(())
        })
        .await;
    }

    /// Waits until `count` sagas are settled (confirmed, rejected or cancelled).
    pub async fn settled(&self, count: usize) {
        testkit::eventually("every saga is settled", WAIT, || async {
            let settled: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM saga.order_sagas
                 WHERE phase IN ('CONFIRMED', 'REJECTED', 'CANCELLED')",
            )
            .fetch_one(&self.db.pool)
            .await
            .unwrap();
            (settled as usize >= count).then_some(())
        })
        .await;
    }

    /// The event types of a stream, in order.
    pub async fn stream(&self, id: Uuid) -> Vec<String> {
        let mut conn = self.db.pool.acquire().await.unwrap();
        eventstore::read_stream(&mut conn, id, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// The first event of a stream (an order's `OrderPlaced`).
    pub async fn first_event(&self, id: Uuid) -> EventEnvelope {
        let mut conn = self.db.pool.acquire().await.unwrap();
        eventstore::read_stream(&mut conn, id, 0)
            .await
            .unwrap()
            .remove(0)
    }

    /// Every event in the log, in order.
    pub async fn log(&self) -> Vec<EventEnvelope> {
        let mut conn = self.db.pool.acquire().await.unwrap();
        eventstore::read_all_after(&mut conn, 0, i64::MAX, None)
            .await
            .unwrap()
    }

    /// A product folded from its stream.
    pub async fn product(&self, id: Uuid) -> domain::product::Product {
        let mut conn = self.db.pool.acquire().await.unwrap();
        let mut state = ProductState::default();
        for envelope in eventstore::read_stream(&mut conn, id, 0).await.unwrap() {
            state = domain::product::evolve(state, &envelope.decode().unwrap());
        }
        state.product().unwrap().clone()
    }

    /// A count from SQL.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A running saga worker.
pub struct Worker {
    /// Stops it gracefully.
    pub stop: CancellationToken,
    /// Its task (abort it to crash the worker).
    pub task: JoinHandle<()>,
}

impl Worker {
    /// Stops it gracefully and waits until it has.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

/// An `OrderPlaced` for `lines`, paid with `tok_ok`.
pub fn placed(lines: Vec<OrderLine>) -> OrderEvent {
    let total_cents = lines.iter().map(|l| l.quantity * l.unit_price_cents).sum();
    OrderEvent::OrderPlaced {
        user_id: "alice".into(),
        lines,
        total_cents,
        payment_token: "tok_ok".into(),
        placed_at: chrono::Utc::now(),
    }
}

/// A poison event: the `OrderPlaced` of an order that is not in the log.
/// The saga reserves its line, then cannot move the order on — every time.
pub fn poison(product: Uuid) -> EventEnvelope {
    let lines = vec![OrderLine {
        product_id: product,
        quantity: 1,
        unit_price_cents: 100,
    }];
    EventEnvelope {
        event_id: Uuid::now_v7(),
        stream_id: Uuid::now_v7(),
        stream_type: "orders".into(),
        stream_version: 1,
        global_position: 0,
        event_type: "OrderPlaced".into(),
        schema_version: 1,
        recorded_at: chrono::Utc::now(),
        payload: domain::DomainEvent::to_payload(&placed(lines)),
        metadata: Metadata::for_command(Uuid::now_v7()),
    }
}

/// Appends one domain event at `expected` version.
pub async fn append(
    conn: &mut sqlx::PgConnection,
    stream_type: &str,
    id: Uuid,
    expected: i64,
    event: &impl domain::DomainEvent,
) -> EventEnvelope {
    eventstore::append(
        conn,
        stream_type,
        id,
        ExpectedVersion::Exact(expected),
        &[NewEvent::from_domain(event)],
        &Metadata::for_command(Uuid::now_v7()),
    )
    .await
    .unwrap()
    .events
    .remove(0)
}
