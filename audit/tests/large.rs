//! The auditor on a large log: `AUDIT_LARGE_EVENTS` events (20k by default,
//! so CI stays quick; 100k for the figure in the report) of confirmed orders
//! on a few products, published to Kafka, the read models rebuilt by the
//! projector's replay, one capture per order in the ledger. The audit must be
//! clean and take seconds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use audit::AuditConfig;
use domain::order::{OrderEvent, OrderLine};
use domain::payment::{payment_id_for, PaymentEvent};
use domain::product::ProductEvent;
use domain::DomainEvent;
use eventstore::EventEnvelope;
use futures::future::try_join_all;
use platform::kafka::KafkaConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use testkit::{TestDatabase, TestKafka};
use uuid::Uuid;

/// Events of one confirmed order: 4 on the order and payment streams, 2 on
/// the product's, and the order's confirmation.
const EVENTS_PER_ORDER: usize = 7;
/// Rows per insert statement.
const CHUNK: usize = 5_000;

/// Events to append, in log order, with their streams' versions.
#[derive(Default)]
struct Generator {
    event_ids: Vec<Uuid>,
    stream_ids: Vec<Uuid>,
    stream_types: Vec<&'static str>,
    versions: Vec<i64>,
    event_types: Vec<&'static str>,
    payloads: Vec<serde_json::Value>,
    current: HashMap<Uuid, (&'static str, i64)>,
}

impl Generator {
    fn push<E: DomainEvent>(&mut self, stream_id: Uuid, event: &E) {
        let version = &mut self
            .current
            .entry(stream_id)
            .or_insert((E::STREAM_TYPE, 0))
            .1;
        *version += 1;
        self.event_ids.push(Uuid::now_v7());
        self.stream_ids.push(stream_id);
        self.stream_types.push(E::STREAM_TYPE);
        self.versions.push(*version);
        self.event_types.push(event.event_type());
        self.payloads.push(event.to_payload());
    }

    /// A confirmed order of one unit of `product`, as the saga writes it.
    fn confirmed_order(&mut self, product: Uuid, price: i64) -> (Uuid, String) {
        let order_id = Uuid::now_v7();
        let payment_id = payment_id_for(order_id);
        let charge_id = format!("ch_{}", order_id.simple());
        let line = OrderLine {
            product_id: product,
            quantity: 1,
            unit_price_cents: price,
        };
        self.push(
            order_id,
            &OrderEvent::OrderPlaced {
                user_id: format!("user-{}", self.event_ids.len() % 97),
                lines: vec![line],
                total_cents: price,
                payment_token: "tok_ok".into(),
                placed_at: chrono::Utc::now(),
            },
        );
        let reserved = ProductEvent::StockReserved {
            order_id,
            quantity: 1,
        };
        self.push(product, &reserved);
        self.push(order_id, &OrderEvent::OrderAwaitingPayment { payment_id });
        let requested = PaymentEvent::PaymentRequested {
            order_id,
            amount_cents: price,
            currency: "EUR".into(),
            token: "tok_ok".into(),
        };
        self.push(payment_id, &requested);
        let captured = PaymentEvent::PaymentCaptured {
            order_id,
            charge_id: charge_id.clone(),
        };
        self.push(payment_id, &captured);
        let committed = ProductEvent::ReservationCommitted {
            order_id,
            quantity: 1,
        };
        self.push(product, &committed);
        self.push(order_id, &OrderEvent::OrderConfirmed { payment_id });
        (order_id, charge_id)
    }

    /// Writes the events (without outbox rows: they are published directly)
    /// and the streams' versions.
    async fn write(&self, pool: &sqlx::PgPool) {
        let metadata =
            serde_json::json!({"correlation_id": Uuid::nil(), "causation_id": Uuid::nil()});
        for start in (0..self.event_ids.len()).step_by(CHUNK) {
            let end = (start + CHUNK).min(self.event_ids.len());
            sqlx::query(
                "INSERT INTO eventstore.events
                     (event_id, stream_id, stream_type, stream_version, event_type, schema_version,
                      payload, metadata)
                 SELECT e, s, t, v, y, 1, p, $7
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::jsonb[])
                     WITH ORDINALITY AS r(e, s, t, v, y, p, n)
                 ORDER BY n",
            )
            .bind(&self.event_ids[start..end])
            .bind(&self.stream_ids[start..end])
            .bind(&self.stream_types[start..end])
            .bind(&self.versions[start..end])
            .bind(&self.event_types[start..end])
            .bind(&self.payloads[start..end])
            .bind(&metadata)
            .execute(pool)
            .await
            .expect("insert events");
        }
        let (ids, rest): (Vec<Uuid>, Vec<(&str, i64)>) =
            self.current.iter().map(|(id, s)| (*id, *s)).unzip();
        let (types, versions): (Vec<&str>, Vec<i64>) = rest.into_iter().unzip();
        sqlx::query(
            "INSERT INTO eventstore.streams (stream_id, stream_type, version)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bigint[])",
        )
        .bind(&ids)
        .bind(&types)
        .bind(&versions)
        .execute(pool)
        .await
        .expect("insert streams");
    }
}

/// Publishes the whole log as the relay would, all in flight at once.
async fn publish_all(kafka: &KafkaConfig, envelopes: &[EventEnvelope]) {
    let producer: FutureProducer = eventstore::relay::producer_config(kafka)
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let sends = envelopes.iter().map(|envelope| {
        let topic = kafka.topic_for(&envelope.stream_type);
        let key = envelope.stream_id.to_string();
        let value = serde_json::to_vec(envelope).unwrap();
        let producer = &producer;
        async move {
            let record = FutureRecord::to(&topic).key(&key).payload(&value);
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(error, _)| error)
        }
    });
    try_join_all(sends).await.expect("publish");
}

#[tokio::test]
async fn a_large_log_is_audited_in_seconds() {
    let wanted: usize = std::env::var("AUDIT_LARGE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    let prepared = Instant::now();
    let mut log = Generator::default();
    let products: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    for (n, product) in products.iter().enumerate() {
        let registered = ProductEvent::ProductRegistered {
            name: format!("Product {n}"),
            price_cents: 500 + n as i64,
            initial_stock: 1_000_000,
        };
        log.push(*product, &registered);
    }
    let mut charges: Vec<(Uuid, String, i64)> = Vec::new();
    for n in 0..wanted.saturating_sub(products.len()) / EVENTS_PER_ORDER {
        let price = 500 + (n % products.len()) as i64;
        let (order, charge) = log.confirmed_order(products[n % products.len()], price);
        charges.push((order, charge, price));
    }
    log.write(&db.pool).await;
    let (orders, charge_ids, amounts): (Vec<Uuid>, Vec<String>, Vec<i64>) =
        charges.into_iter().fold(
            Default::default(),
            |(mut o, mut c, mut a), (order, charge, amount)| {
                o.push(order);
                c.push(charge);
                a.push(amount);
                (o, c, a)
            },
        );
    let keys: Vec<String> = orders
        .iter()
        .map(|o| payment_id_for(*o).to_string())
        .collect();
    sqlx::query(
        "INSERT INTO gateway.charges (charge_id, idempotency_key, request_hash, reference,
             amount_cents, currency, token, status)
         SELECT c, k, 'generated', r, a, 'EUR', 'tok_ok', 'captured'
         FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::bigint[]) AS t(c, k, r, a)",
    )
    .bind(&charge_ids)
    .bind(&keys)
    .bind(&orders)
    .bind(&amounts)
    .execute(&db.pool)
    .await
    .expect("insert charges");
    let mut conn = db.pool.acquire().await.unwrap();
    let envelopes = eventstore::read_all_after(&mut conn, 0, i64::MAX, None)
        .await
        .unwrap();
    drop(conn);
    publish_all(&kafka.config, &envelopes).await;
    let options = projector::ReplayOptions {
        progress: projector::ProgressMode::Hidden,
        ..projector::ReplayOptions::default()
    };
    projector::replay(&db.pool, &options).await.expect("replay");
    println!(
        "{} events generated, published and projected in {:.1}s",
        envelopes.len(),
        prepared.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let report = audit::run(&AuditConfig::new(&db.url, kafka.config.clone()))
        .await
        .expect("audit runs");
    let elapsed = started.elapsed();
    println!("{report}");
    println!(
        "{} events audited in {:.2}s",
        envelopes.len(),
        elapsed.as_secs_f64()
    );
    assert!(report.is_clean(), "{report}");
    let kafka_line = report.line_of(audit::Check::Kafka, "kafka:").unwrap();
    assert!(
        kafka_line.starts_with(&format!("kafka: {} logged events", envelopes.len())),
        "{kafka_line}"
    );
    // Seconds, not minutes, even in a debug build on a shared machine.
    let bound = Duration::from_secs(10) * u32::try_from(envelopes.len() / 20_000 + 1).unwrap();
    assert!(
        elapsed < bound,
        "{} events took {elapsed:?}",
        envelopes.len()
    );
}
