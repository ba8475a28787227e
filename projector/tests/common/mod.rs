//! Shared harness of the projector's integration tests: a fresh database and
//! topic prefix per test, event builders that append to the real log, a
//! publisher, running consumers, and read-model snapshots.

#![allow(dead_code)]

pub mod generate;
pub mod saga;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::order::{OrderEvent, OrderLine};
use domain::product::ProductEvent;
use eventstore::relay::{Relay, RelayConfig};
use eventstore::{EventEnvelope, ExpectedVersion, Metadata, NewEvent};
use projector::{Consumer, ConsumerSettings, ConsumerStats, ProgressMode, ReplayOptions};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use testkit::{TestDatabase, TestKafka};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long tests wait for the projector to catch up.
pub const SETTLE: Duration = Duration::from_secs(60);

/// Read tables and their keys, for snapshots.
pub const TABLES: [(&str, &str); 4] = [
    ("products", "product_id"),
    ("orders", "order_id"),
    ("user_orders", "order_id"),
    ("payments", "payment_id"),
];

/// One test's database, topics and producer.
pub struct Harness {
    /// The test database.
    pub db: TestDatabase,
    /// The test topics.
    pub kafka: TestKafka,
    producer: FutureProducer,
}

impl Harness {
    /// A fresh database and topic prefix.
    pub async fn new() -> Self {
        testkit::init_logging();
        let db = TestDatabase::create().await;
        let kafka = TestKafka::create().await;
        let producer: FutureProducer = kafka
            .config
            .client_config()
            .set("message.timeout.ms", "30000")
            .create()
            .expect("create test producer");
        Self {
            db,
            kafka,
            producer,
        }
    }

    /// The owner's pool.
    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// Appends `events` to a stream in its own transaction.
    pub async fn append(
        &self,
        stream_type: &str,
        stream_id: Uuid,
        events: &[NewEvent],
    ) -> Vec<EventEnvelope> {
        let mut tx = self.db.pool.begin().await.expect("begin");
        let appended = eventstore::append(
            &mut tx,
            stream_type,
            stream_id,
            ExpectedVersion::Any,
            events,
            &Metadata::for_command(Uuid::now_v7()),
        )
        .await
        .expect("append");
        tx.commit().await.expect("commit append");
        appended.events
    }

    /// Registers a product.
    pub async fn register(&self, id: Uuid, name: &str, price: i64, stock: i64) -> EventEnvelope {
        let event = ProductEvent::ProductRegistered {
            name: name.to_owned(),
            price_cents: price,
            initial_stock: stock,
        };
        self.append("inventory", id, &[NewEvent::from_domain(&event)])
            .await
            .remove(0)
    }

    /// Restocks a product.
    pub async fn restock(&self, id: Uuid, quantity: i64) -> EventEnvelope {
        let event = ProductEvent::ProductRestocked { quantity };
        self.append("inventory", id, &[NewEvent::from_domain(&event)])
            .await
            .remove(0)
    }

    /// Places an order of `(product, quantity, unit price)` lines.
    pub async fn place_order(
        &self,
        id: Uuid,
        user: &str,
        lines: &[(Uuid, i64, i64)],
    ) -> EventEnvelope {
        let lines: Vec<OrderLine> = lines
            .iter()
            .map(|&(product_id, quantity, unit_price_cents)| OrderLine {
                product_id,
                quantity,
                unit_price_cents,
            })
            .collect();
        let total_cents = lines.iter().map(|l| l.quantity * l.unit_price_cents).sum();
        let event = OrderEvent::OrderPlaced {
            user_id: user.to_owned(),
            lines,
            total_cents,
            payment_token: "tok_test".to_owned(),
            placed_at: Utc::now(),
        };
        self.append("orders", id, &[NewEvent::from_domain(&event)])
            .await
            .remove(0)
    }

    /// Appends a mixed workload: `products` products registered and restocked
    /// twice, `orders` orders of one to three lines. Deterministic.
    pub async fn populate(&self, products: usize, orders: usize) -> Vec<EventEnvelope> {
        let mut events = Vec::new();
        let mut ids = Vec::new();
        for i in 0..products {
            let id = Uuid::now_v7();
            ids.push(id);
            events.push(
                self.register(id, &format!("product {i}"), 100 + i as i64, 10)
                    .await,
            );
        }
        let mut seed = 7_u64;
        for round in 0..2 {
            for (i, id) in ids.iter().enumerate() {
                events.push(self.restock(*id, (round * 10 + i % 7 + 1) as i64).await);
            }
        }
        for i in 0..orders {
            let mut lines = Vec::new();
            let count = 1 + i % 3;
            for _ in 0..count {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let product = ids[(seed >> 33) as usize % ids.len()];
                if lines.iter().all(|(p, _, _)| *p != product) {
                    lines.push((product, 1 + (seed % 5) as i64, 250));
                }
            }
            events.push(
                self.place_order(Uuid::now_v7(), &format!("user-{}", i % 5), &lines)
                    .await,
            );
        }
        events
    }

    /// Publishes envelopes to their topics as the relay would; returns where
    /// each landed as `(partition, offset)`.
    pub async fn publish(&self, events: &[EventEnvelope]) -> Vec<(i32, i64)> {
        let mut delivered = Vec::with_capacity(events.len());
        for event in events {
            let topic = self.kafka.config.topic_for(&event.stream_type);
            let key = event.stream_id.to_string();
            let value = serde_json::to_vec(event).expect("envelope serializes");
            let record = FutureRecord::to(&topic)
                .key(&key)
                .payload(&value)
                .headers(eventstore::relay::envelope_headers(event));
            let delivery = self
                .producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(error, _)| error)
                .expect("publish");
            delivered.push((delivery.partition, delivery.offset));
        }
        delivered
    }

    /// Publishes raw bytes to a stream type's topic.
    pub async fn publish_raw(&self, stream_type: &str, key: &str, value: &[u8]) {
        let topic = self.kafka.config.topic_for(stream_type);
        self.producer
            .send(
                FutureRecord::to(&topic).key(key).payload(value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(error, _)| error)
            .expect("publish raw");
    }

    /// Starts a consumer in `group` over the test database.
    pub fn consumer(&self, group: &str) -> RunningConsumer {
        RunningConsumer::start(self.db.pool.clone(), self, group)
    }

    /// Starts a consumer in `group` that parks an event after `max_attempts` tries.
    pub fn consumer_with_attempts(&self, group: &str, max_attempts: u32) -> RunningConsumer {
        let settings = ConsumerSettings {
            max_attempts,
            ..consumer_settings(group)
        };
        RunningConsumer::start_with(self.db.pool.clone(), self, settings)
    }

    /// Publishes `value` in place of `event`'s envelope, with the event's
    /// key and headers (a message corrupted on the way); returns where it
    /// landed as `(partition, offset)`.
    pub async fn publish_corrupt(&self, event: &EventEnvelope, value: &[u8]) -> (i32, i64) {
        let topic = self.kafka.config.topic_for(&event.stream_type);
        let key = event.stream_id.to_string();
        let record = FutureRecord::to(&topic)
            .key(&key)
            .payload(value)
            .headers(eventstore::relay::envelope_headers(event));
        let delivery = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(error, _)| error)
            .expect("publish corrupt");
        (delivery.partition, delivery.offset)
    }

    /// Starts the outbox relay.
    pub fn relay(&self) -> Background {
        let relay = Relay::new(
            self.db.pool.clone(),
            self.kafka.config.clone(),
            RelayConfig {
                poll_interval_ms: 100,
                ..RelayConfig::default()
            },
        )
        .expect("create relay");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handle = tokio::spawn(async move { relay.run(token).await });
        Background { shutdown, handle }
    }

    /// A unique consumer group name.
    pub fn group(&self) -> String {
        format!("projector-{}", Uuid::new_v4().simple())
    }

    /// Every read table's rows, ordered by key, as JSON.
    pub async fn snapshot(&self) -> BTreeMap<&'static str, serde_json::Value> {
        snapshot(&self.db.pool).await
    }

    /// Waits until every stream of the log is projected at its last version.
    pub async fn wait_projected(&self) {
        let pool = self.db.pool.clone();
        testkit::eventually("the read models to catch up with the log", SETTLE, || {
            let pool = pool.clone();
            async move { (lagging_streams(&pool).await == 0).then_some(()) }
        })
        .await;
    }

    /// Replays `projections` (all if empty) without progress output.
    pub async fn replay(&self, projections: &[&str]) -> projector::ReplaySummary {
        projector::replay(&self.db.pool, &replay_options(projections))
            .await
            .expect("replay")
    }
}

/// Replay options for tests: no progress output, small batches.
pub fn replay_options(projections: &[&str]) -> ReplayOptions {
    ReplayOptions {
        projections: projections.iter().map(|p| (*p).to_owned()).collect(),
        batch_size: 200,
        progress: ProgressMode::Hidden,
        ..ReplayOptions::default()
    }
}

/// Every read table's rows, ordered by key, as JSON.
pub async fn snapshot(pool: &PgPool) -> BTreeMap<&'static str, serde_json::Value> {
    let mut tables = BTreeMap::new();
    for (table, key) in TABLES {
        let rows: serde_json::Value = sqlx::query_scalar(&format!(
            "SELECT coalesce(json_agg(t ORDER BY t.{key}), '[]'::json) FROM read.{table} t"
        ))
        .fetch_one(pool)
        .await
        .expect("snapshot");
        tables.insert(table, rows);
    }
    tables
}

/// How many (stream, read table) pairs are not at the stream's version.
pub async fn lagging_streams(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT
           (SELECT count(*) FROM eventstore.streams s LEFT JOIN read.products p ON p.product_id = s.stream_id
            WHERE s.stream_type = 'inventory' AND p.version IS DISTINCT FROM s.version)
         + (SELECT count(*) FROM eventstore.streams s LEFT JOIN read.orders o ON o.order_id = s.stream_id
            WHERE s.stream_type = 'orders' AND o.version IS DISTINCT FROM s.version)
         + (SELECT count(*) FROM eventstore.streams s LEFT JOIN read.user_orders u ON u.order_id = s.stream_id
            WHERE s.stream_type = 'orders' AND u.version IS DISTINCT FROM s.version)
         + (SELECT count(*) FROM eventstore.streams s LEFT JOIN read.payments y ON y.payment_id = s.stream_id
            WHERE s.stream_type = 'payments' AND y.version IS DISTINCT FROM s.version)",
    )
    .fetch_one(pool)
    .await
    .expect("count lagging streams")
}

/// Runs the `projector` binary with `args` against `database_url`.
pub async fn run_projector(args: &[&str], database_url: &str) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_projector"));
    command
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn");
    tokio::task::spawn_blocking(move || command.output().expect("run the projector binary"))
        .await
        .unwrap()
}

/// Consumer settings for tests: `group`, short retry backoffs.
pub fn consumer_settings(group: &str) -> ConsumerSettings {
    ConsumerSettings {
        group_id: group.to_owned(),
        retry_initial_backoff: Duration::from_millis(50),
        retry_max_backoff: Duration::from_millis(500),
        ..ConsumerSettings::default()
    }
}

/// A background task stopped through its token.
pub struct Background {
    /// Cancels the task.
    pub shutdown: CancellationToken,
    handle: JoinHandle<()>,
}

impl Background {
    /// Cancels the task and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("background task stops")
            .expect("background task did not panic");
    }
}

/// A live projector instance running in the background.
pub struct RunningConsumer {
    /// Its counters.
    pub stats: Arc<ConsumerStats>,
    /// Its partition assignment.
    pub assignment: watch::Receiver<Vec<(String, i32)>>,
    task: Background,
}

impl RunningConsumer {
    /// Starts a consumer over `pool` in `group`.
    pub fn start(pool: PgPool, harness: &Harness, group: &str) -> Self {
        Self::start_with(pool, harness, consumer_settings(group))
    }

    /// Starts a consumer over `pool` with `settings`.
    pub fn start_with(pool: PgPool, harness: &Harness, settings: ConsumerSettings) -> Self {
        let consumer =
            Consumer::new(pool, &harness.kafka.config, settings).expect("create consumer");
        let stats = consumer.stats();
        let assignment = consumer.assignment();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handle = tokio::spawn(consumer.run(token));
        Self {
            stats,
            assignment,
            task: Background { shutdown, handle },
        }
    }

    /// Waits until the group assigned this instance at least one partition.
    pub async fn wait_assigned(&self) {
        let assignment = self.assignment.clone();
        testkit::eventually("a partition assignment", SETTLE, || {
            let empty = assignment.borrow().is_empty();
            async move { (!empty).then_some(()) }
        })
        .await;
    }

    /// Stops it (committing its stored offsets) and waits.
    pub async fn stop(self) {
        self.task.stop().await;
    }
}
