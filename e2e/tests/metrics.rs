//! Every process serves `/metrics` in the Prometheus text format with the
//! metrics an operator needs, named by Prometheus conventions: the real
//! binaries, one order through them, a poison message for the dead letters.

use std::time::Duration;

use e2e::processes::{Process, Processes};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use testkit::prometheus::Exposition;
use testkit::{TestDatabase, TestKafka};

const WAIT: Duration = Duration::from_secs(40);

async fn scrape(http: &reqwest::Client, process: &Process) -> Exposition {
    let response = http
        .get(format!("{}/metrics", process.url()))
        .send()
        .await
        .unwrap_or_else(|error| panic!("scrape {}: {error}", process.name));
    assert_eq!(response.status(), 200, "{}", process.name);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{}: {content_type}",
        process.name
    );
    let text = response.text().await.unwrap();
    Exposition::parse(&text).unwrap_or_else(|error| panic!("{}: {error}\n{text}", process.name))
}

/// Scrapes `process` until every `(series, labels)` of `wanted` has a
/// sample (samplers and librdkafka statistics report every few seconds).
async fn scrape_until(
    http: &reqwest::Client,
    process: &Process,
    wanted: &[(&str, &[(&str, &str)])],
) -> Exposition {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let exposition = scrape(http, process).await;
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|(name, labels)| exposition.value(name, labels).is_none())
            .map(|(name, _)| *name)
            .collect();
        if missing.is_empty() {
            check_conventions(process.name, &exposition);
            return exposition;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never exposed {missing:?}",
            process.name
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Counters end in `_total`; histograms of time end in `_seconds`.
fn check_conventions(process: &str, exposition: &Exposition) {
    for (family, kind) in &exposition.types {
        match kind.as_str() {
            "counter" => assert!(family.ends_with("_total"), "{process}: counter {family}"),
            "histogram" => assert!(
                family.ends_with("_seconds") || family.ends_with("_size"),
                "{process}: histogram {family} has no unit suffix"
            ),
            _ => {}
        }
    }
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let response = http.post(url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

#[tokio::test]
async fn every_process_serves_its_metrics_in_the_prometheus_format() {
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    kafka.config.ensure_topics().await.unwrap();
    let http = reqwest::Client::new();
    let processes = Processes::start(&db, &kafka, &http).await;

    let product = post(
        &http,
        format!("{}/products", processes.command_api.url()),
        json!({"name": "Mug", "price_cents": 500, "initial_stock": 3}),
    )
    .await;
    let order = post(
        &http,
        format!("{}/orders", processes.command_api.url()),
        json!({"user_id": "alice", "lines": [{"product_id": product["product_id"], "quantity": 1}],
               "payment": {"token": "tok_ok"}}),
    )
    .await;
    let order_url = format!(
        "{}/orders/{}",
        processes.query_api.url(),
        order["order_id"].as_str().unwrap()
    );
    testkit::eventually("the order is confirmed", WAIT, || async {
        let body: Value = http.get(&order_url).send().await.ok()?.json().await.ok()?;
        (body["status"] == "CONFIRMED").then_some(())
    })
    .await;
    // A message the saga cannot parse: dead-lettered at once.
    let orders_topic = kafka.config.topic_for("orders");
    let producer: FutureProducer = kafka.config.client_config().create().unwrap();
    producer
        .send(
            FutureRecord::to(&orders_topic)
                .key("poison")
                .payload("{not json"),
            Duration::from_secs(5),
        )
        .await
        .expect("publish");

    let command = scrape_until(
        &http,
        &processes.command_api,
        &[
            (
                "http_requests_total",
                &[("method", "POST"), ("route", "/orders"), ("status", "201")],
            ),
            (
                "http_request_duration_seconds_bucket",
                &[("route", "/products"), ("le", "+Inf")],
            ),
            (
                "eventstore_events_appended_total",
                &[("stream_type", "orders")],
            ),
            ("command_batch_size_count", &[]),
            (
                "db_pool_connections",
                &[("pool", "command"), ("state", "idle")],
            ),
            ("db_pool_max_connections", &[("pool", "command")]),
        ],
    )
    .await;
    // The product's registration; its reservations are the saga's appends.
    assert_eq!(
        command.value(
            "eventstore_events_appended_total",
            &[("stream_type", "inventory")]
        ),
        Some(1.0)
    );

    let query = scrape_until(
        &http,
        &processes.query_api,
        &[
            (
                "http_requests_total",
                &[("route", "/orders/{id}"), ("status", "200")],
            ),
            (
                "db_pool_connections",
                &[("pool", "query"), ("state", "in_use")],
            ),
        ],
    )
    .await;
    assert_eq!(
        query.value("http_requests_total", &[("route", "unmatched")]),
        None,
        "route templates, not raw paths"
    );

    let orders_topic_label = orders_topic.as_str();
    let relay = scrape_until(
        &http,
        &processes.outbox_relay,
        &[
            (
                "relay_events_published_total",
                &[("topic", orders_topic_label)],
            ),
            ("outbox_backlog_events", &[]),
            ("outbox_oldest_event_age_seconds", &[]),
            ("relay_is_leader", &[]),
            ("db_pool_connections", &[("pool", "relay")]),
        ],
    )
    .await;
    assert_eq!(relay.value("relay_is_leader", &[]), Some(1.0));

    let group = format!("{}projector", kafka.config.topic_prefix);
    let projector = scrape_until(
        &http,
        &processes.projector,
        &[
            (
                "projector_last_global_position",
                &[("projection", "orders")],
            ),
            ("projector_events_total", &[("outcome", "applied")]),
            (
                "kafka_consumer_lag",
                &[("group", group.as_str()), ("topic", orders_topic_label)],
            ),
            ("db_pool_connections", &[("pool", "projector")]),
            // The poison message is the projector's dead letter too.
            (
                "dead_letters_total",
                &[("consumer", "projector"), ("topic", orders_topic_label)],
            ),
            (
                "dead_letters_parked",
                &[("consumer", "projector"), ("topic", orders_topic_label)],
            ),
        ],
    )
    .await;
    // Sampled every few seconds, for every event topic (0 when none is parked).
    testkit::eventually(
        "the projector's parked dead letter sampled",
        WAIT,
        || async {
            let parked = scrape(&http, &processes.projector).await.value(
                "dead_letters_parked",
                &[("consumer", "projector"), ("topic", orders_topic_label)],
            );
            (parked == Some(1.0)).then_some(())
        },
    )
    .await;
    assert!(
        projector.value(
            "projector_last_global_position",
            &[("projection", "orders")]
        ) > Some(0.0)
    );
    // One lag series per partition of each topic, once librdkafka knows them all.
    let partitions = usize::try_from(kafka.config.partitions).unwrap();
    testkit::eventually("a lag for every partition", WAIT, || async {
        let lags = scrape(&http, &processes.projector)
            .await
            .matching("kafka_consumer_lag", &[("topic", orders_topic_label)])
            .count();
        (lags == partitions).then_some(())
    })
    .await;

    let saga_group = format!("{}saga", kafka.config.topic_prefix);
    let saga = scrape_until(
        &http,
        &processes.saga_worker,
        &[
            ("saga_instances", &[("phase", "CONFIRMED")]),
            (
                "payment_calls_total",
                &[("operation", "charge"), ("outcome", "ok")],
            ),
            (
                "payment_call_duration_seconds_count",
                &[("operation", "charge")],
            ),
            ("payment_breaker_state", &[]),
            (
                "dead_letters_total",
                &[("consumer", "saga"), ("topic", orders_topic_label)],
            ),
            (
                "dead_letters_parked",
                &[("consumer", "saga"), ("topic", orders_topic_label)],
            ),
            ("kafka_consumer_lag", &[("group", saga_group.as_str())]),
            ("db_pool_connections", &[("pool", "saga")]),
        ],
    )
    .await;
    assert_eq!(
        saga.value("payment_breaker_state", &[]),
        Some(0.0),
        "closed"
    );
    assert_eq!(
        saga.value("dead_letters_parked", &[("topic", orders_topic_label)]),
        Some(1.0)
    );

    // The dedup rows of the settled order go once the group is past them
    // (the consumer commits every 5 s; the pruner steps every second).
    testkit::eventually(
        "processed-event rows pruned",
        Duration::from_secs(60),
        || async {
            scrape(&http, &processes.saga_worker)
                .await
                .value("saga_processed_events_pruned_total", &[])
                .filter(|pruned| *pruned >= 1.0)
                .map(|_| ())
        },
    )
    .await;

    scrape_until(
        &http,
        &processes.payment_gateway,
        &[(
            "http_requests_total",
            &[("method", "POST"), ("route", "/charges")],
        )],
    )
    .await;
}
