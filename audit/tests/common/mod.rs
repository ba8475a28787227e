//! One real system state shared by the audit tests, built once: the whole
//! system in-process (`e2e::System`: command API, relay, projector, saga
//! worker, payment gateway) over real Postgres and Kafka, a few products and
//! orders that confirm, decline, are rejected and cancelled, sent with
//! `Idempotency-Key`s whose answers are written to an answers file like the
//! chaos workload's. Once quiet the system is stopped and its database kept
//! as a template: each test audits (and breaks) its own copy, reading the
//! shared topics, or topics it publishes itself.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use audit::{AuditConfig, AuditReport};
use e2e::System;
use eventstore::{EventEnvelope, ExpectedVersion, Metadata, NewEvent};
use platform::kafka::KafkaConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

/// Longest wait for the system to settle.
const SETTLE: Duration = Duration::from_secs(60);

/// What the shared state holds.
#[derive(Debug, Clone)]
pub struct Base {
    /// The template database (nobody connects to it after it is built).
    pub database: String,
    /// The topics the system published to.
    pub kafka: KafkaConfig,
    /// The workload's answers file.
    pub answers: PathBuf,
    /// Registered with 10, restocked with 5, price 1250.
    pub mug: Uuid,
    /// Registered with 2, price 300.
    pub cup: Uuid,
    /// Confirmed orders: alice's 2 mugs, bob's mug and cup.
    pub confirmed: [Uuid; 2],
    /// Carol's order, its payment declined: CANCELLED.
    pub declined: Uuid,
    /// Dave's 5 cups: REJECTED.
    pub rejected: Uuid,
    /// Erin's order, cancelled by her while its payment hung: CANCELLED.
    pub cancelled: Uuid,
}

static BASE: OnceLock<Base> = OnceLock::new();

/// The shared state, built by the first test that asks (on a thread and
/// runtime of its own, so the system dies with it when it is built).
pub fn base() -> &'static Base {
    BASE.get_or_init(|| {
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            let base = runtime.block_on(build());
            // Dropping the runtime stops every task of the system.
            drop(runtime);
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(disconnect(&base.database));
            base
        })
        .join()
        .expect("building the shared state")
    })
}

/// Requests that go through the command API, answers recorded.
struct Workload<'a> {
    system: &'a System,
    answers: Vec<String>,
}

impl Workload<'_> {
    async fn post(&mut self, path: &str, body: Value, key: &str) -> (StatusCode, Value) {
        let response = self
            .system
            .http
            .post(format!("{}{path}", self.system.command_url))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .expect("command request");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        self.answers.push(
            json!({"key": key, "method": "POST", "path": path, "status": status.as_u16(), "body": body})
                .to_string(),
        );
        (status, body)
    }

    async fn created(&mut self, path: &str, body: Value, key: &str, field: &str) -> Uuid {
        let (status, answer) = self.post(path, body, key).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {answer}");
        answer[field].as_str().unwrap().parse().unwrap()
    }

    async fn order(&mut self, key: &str, user: &str, lines: &[(Uuid, i64)], token: &str) -> Uuid {
        let lines: Vec<Value> = lines
            .iter()
            .map(|(product, quantity)| json!({"product_id": product, "quantity": quantity}))
            .collect();
        let body = json!({"user_id": user, "lines": lines, "payment": {"token": token}});
        self.created("/orders", body, key, "order_id").await
    }
}

async fn build() -> Base {
    let system = System::start().await;
    let mut work = Workload {
        system: &system,
        answers: Vec::new(),
    };
    let mug_body = json!({"name": "Mug", "price_cents": 1250, "initial_stock": 10});
    let mug = work
        .created("/products", mug_body.clone(), "product-mug", "product_id")
        .await;
    // The same key and body again: a replay.
    let replayed = work
        .created("/products", mug_body, "product-mug", "product_id")
        .await;
    assert_eq!(replayed, mug);
    let cup_body = json!({"name": "Cup", "price_cents": 300, "initial_stock": 2});
    let cup = work
        .created("/products", cup_body, "product-cup", "product_id")
        .await;
    let (status, body) = work
        .post(
            &format!("/products/{mug}/restock"),
            json!({"quantity": 5}),
            "restock-mug",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let alice = work.order("order-1", "alice", &[(mug, 2)], "tok_ok").await;
    let again = work.order("order-1", "alice", &[(mug, 2)], "tok_ok").await;
    assert_eq!(again, alice);
    let bob = work
        .order("order-2", "bob", &[(mug, 1), (cup, 1)], "tok_ok")
        .await;
    let carol = work
        .order("order-3", "carol", &[(mug, 1)], "tok_decline")
        .await;
    let dave = work.order("order-4", "dave", &[(cup, 5)], "tok_ok").await;
    let erin = work.order("order-5", "erin", &[(mug, 1)], "tok_hang").await;
    let unknown = json!({"user_id": "frank", "lines": [{"product_id": Uuid::now_v7(), "quantity": 1}], "payment": {"token": "tok_ok"}});
    let (status, body) = work.post("/orders", unknown, "order-unknown-product").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    system
        .query_until(&format!("/orders/{erin}"), SETTLE, |o| {
            o["status"] == "AWAITING_PAYMENT"
        })
        .await;
    let (status, body) = work
        .post(&format!("/orders/{erin}/cancel"), json!({}), "cancel-5")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let expected = [
        (alice, "CONFIRMED"),
        (bob, "CONFIRMED"),
        (carol, "CANCELLED"),
        (dave, "REJECTED"),
        (erin, "CANCELLED"),
    ];
    for (order, status) in expected {
        let found = system.terminal_order(&order.to_string(), SETTLE).await;
        assert_eq!(found["status"], status, "{found}");
    }
    settle(&system.db.pool).await;

    let answers = std::env::temp_dir().join(format!("audit-answers-{}.jsonl", Uuid::new_v4()));
    std::fs::write(&answers, work.answers.join("\n") + "\n").expect("write answers");
    Base {
        database: system.db.name.clone(),
        kafka: system.kafka.config.clone(),
        answers,
        mug,
        cup,
        confirmed: [alice, bob],
        declined: carol,
        rejected: dave,
        cancelled: erin,
    }
}

/// Waits until nothing is left to do: the outbox relayed, no saga with work
/// pending, every read model at its stream's version, and no new event for
/// a second.
async fn settle(pool: &PgPool) {
    let deadline = Instant::now() + SETTLE;
    let mut last = None;
    loop {
        let (quiet, position): (bool, i64) = sqlx::query_as(
            "SELECT NOT EXISTS (SELECT FROM eventstore.outbox)
                AND NOT EXISTS (SELECT FROM saga.order_sagas WHERE next_action_at IS NOT NULL)
                AND NOT EXISTS (
                    SELECT FROM eventstore.streams s
                    WHERE s.version IS DISTINCT FROM COALESCE(
                        (SELECT version FROM read.products WHERE product_id = s.stream_id),
                        (SELECT version FROM read.orders WHERE order_id = s.stream_id),
                        (SELECT version FROM read.payments WHERE payment_id = s.stream_id)))
                AND NOT EXISTS (
                    SELECT FROM read.orders o JOIN read.user_orders u USING (order_id)
                    WHERE o.version <> u.version),
                COALESCE((SELECT max(global_position) FROM eventstore.events), 0)",
        )
        .fetch_one(pool)
        .await
        .expect("settle query");
        if quiet && last == Some(position) {
            return;
        }
        last = quiet.then_some(position);
        assert!(Instant::now() < deadline, "the system never settled");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn admin() -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(&testkit::database::admin_url())
        .await
        .expect("admin connection")
}

/// Ends every session still connected to `database` (the stopped system's
/// pools), so it can be a template.
async fn disconnect(database: &str) {
    let pool = admin().await;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .execute(&pool)
    .await
    .expect("terminate sessions");
    pool.close().await;
}

/// A test's own copy of the shared state.
pub struct Copy {
    /// Its URL.
    pub url: String,
    /// A pool on it.
    pub pool: PgPool,
    /// What it was copied from.
    pub base: &'static Base,
}

impl Copy {
    /// Copies the shared state's database.
    pub async fn new() -> Self {
        let base = base();
        let name = format!("audit_{}", Uuid::new_v4().simple());
        let admin = admin().await;
        let mut tries = 0;
        // Copies of one template cannot start while another is starting.
        while let Err(error) = sqlx::query(&format!(
            "CREATE DATABASE {name} TEMPLATE {}",
            base.database
        ))
        .execute(&admin)
        .await
        {
            tries += 1;
            assert!(tries < 60, "cannot copy {}: {error}", base.database);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        admin.close().await;
        let url = testkit::database::with_database(&testkit::database::admin_url(), &name);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .expect("connect to the copy");
        Self { url, pool, base }
    }

    /// An audit of the copy against `kafka`'s topics, without answers.
    pub fn config(&self, kafka: &KafkaConfig) -> AuditConfig {
        let mut config = AuditConfig::new(&self.url, kafka.clone());
        config.kafka_timeout_ms = 10_000;
        config
    }

    /// Audits the copy against the shared topics and answers file.
    pub async fn audit(&self) -> AuditReport {
        let mut config = self.config(&self.base.kafka);
        config.answers = Some(self.base.answers.clone());
        self.run(&config).await
    }

    /// Runs `config` and prints the report.
    pub async fn run(&self, config: &AuditConfig) -> AuditReport {
        let report = audit::run(config).await.expect("audit runs");
        println!("{report}");
        report
    }

    /// Appends `events` to a stream through the log's append path, then
    /// removes their outbox rows: logged, never to be published.
    pub async fn append_unpublished(
        &self,
        stream_type: &str,
        stream_id: Uuid,
        events: &[NewEvent],
    ) -> Vec<EventEnvelope> {
        let mut tx = self.pool.begin().await.unwrap();
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
        let positions: Vec<i64> = appended.events.iter().map(|e| e.global_position).collect();
        sqlx::query("DELETE FROM eventstore.outbox WHERE global_position = ANY($1)")
            .bind(&positions)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        appended.events
    }

    /// The whole log, in order.
    pub async fn envelopes(&self) -> Vec<EventEnvelope> {
        let mut conn = self.pool.acquire().await.unwrap();
        eventstore::read_all_after(&mut conn, 0, i64::MAX, None)
            .await
            .unwrap()
    }

    /// Runs `sql` on the copy.
    pub async fn execute(&self, sql: &str) {
        sqlx::query(sql).execute(&self.pool).await.expect(sql);
    }
}

/// Publishes `envelopes` in this order to `kafka`'s topics as the relay
/// would (key = stream id, the envelope as JSON, its ids as headers), each
/// acknowledged before the next is sent.
pub async fn publish(kafka: &KafkaConfig, envelopes: &[EventEnvelope]) {
    let producer: FutureProducer = eventstore::relay::producer_config(kafka)
        .create()
        .expect("producer");
    for envelope in envelopes {
        let topic = kafka.topic_for(&envelope.stream_type);
        let key = envelope.stream_id.to_string();
        let value = serde_json::to_vec(envelope).unwrap();
        let record = FutureRecord::to(&topic)
            .key(&key)
            .payload(&value)
            .headers(eventstore::relay::envelope_headers(envelope));
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("publish");
    }
}
