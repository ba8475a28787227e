//! The pipelined relay's failure paths: Kafka going away while batches are
//! in flight, and an event the producer refuses in the middle of the
//! pipeline. Nothing undelivered leaves the outbox, nothing is lost, and no
//! later event of a stream reaches Kafka before an earlier one.

mod common;
mod relay_support;

use std::net::SocketAddr;
use std::time::Duration;

use common::{count, event};
use eventstore::relay::{Relay, RelayConfig, RelayRole};
use eventstore::{append, ExpectedVersion, Metadata, NewEvent};
use platform::kafka::KafkaConfig;
use relay_support::assert_per_stream_order;
use relay_support::kafka_proxy::KafkaProxy;
use sqlx::PgPool;
use testkit::{eventually, TestDatabase, TestKafka};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// A relay publishing to `kafka`, pipelined with small batches.
fn start_relay(db: &TestDatabase, kafka: KafkaConfig, batch_size: i64) -> CancellationToken {
    let config = RelayConfig {
        batch_size,
        max_in_flight_batches: 8,
        poll_interval_ms: 100,
        standby_retry_ms: 100,
        delivery_timeout_ms: 1000,
        ..RelayConfig::default()
    };
    let relay = Relay::new(db.pool.clone(), kafka, config).expect("relay");
    let mut role = relay.role();
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move { relay.run(stop).await }
    });
    tokio::spawn(async move { role.wait_for(|r| *r == RelayRole::Leader).await.map(|_| ()) });
    stop
}

/// Appends `per_stream` events to each stream, `chunk` per append, all in
/// one transaction.
async fn append_many(pool: &PgPool, streams: &[Uuid], per_stream: usize, chunk: usize) -> usize {
    let mut tx = pool.begin().await.unwrap();
    let mut appended = 0;
    for _ in 0..per_stream / chunk {
        for stream in streams {
            let events: Vec<NewEvent> = (0..chunk).map(|n| event(n as i64)).collect();
            let metadata = Metadata::for_command(Uuid::now_v7());
            append(
                &mut tx,
                "orders",
                *stream,
                ExpectedVersion::Any,
                &events,
                &metadata,
            )
            .await
            .unwrap();
            appended += chunk;
        }
    }
    tx.commit().await.unwrap();
    appended
}

#[tokio::test]
async fn kafka_cut_mid_pipeline_loses_nothing_keeps_stream_order_and_the_outbox_drains_after() {
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    let broker: SocketAddr = testkit::kafka::brokers()
        .parse()
        .expect("KAFKA_BROKERS is ip:port");
    let proxy = KafkaProxy::start(broker).await;
    let through_proxy = KafkaConfig::new(
        proxy.address().to_string(),
        kafka.config.topic_prefix.clone(),
    );
    let streams: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    let mut total = append_many(&db.pool, &streams, 1000, 50).await;
    let probe = kafka.probe(&["orders"]);

    let _relay = start_relay(&db, through_proxy, 100);
    // Cut while the relay is part-way through the backlog.
    eventually("the relay delivered part of the backlog", WAIT, || async {
        (count(&db.pool, "eventstore.outbox").await < total as i64 - 1000).then_some(())
    })
    .await;
    proxy.cut();
    // Acknowledgements that crossed the proxy just before the cut may still
    // be turned into deletes; from then on nothing can be acknowledged.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left_at_cut = count(&db.pool, "eventstore.outbox").await;
    assert!(left_at_cut > 0, "the backlog was drained before the cut");
    // Appends go on during the outage; the relay times out and restarts.
    total += append_many(&db.pool, &streams, 10, 5).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(
        count(&db.pool, "eventstore.outbox").await >= left_at_cut,
        "rows left the outbox while Kafka was unreachable"
    );

    proxy.restore();
    eventually("the outbox drained after Kafka came back", WAIT, || async {
        (count(&db.pool, "eventstore.outbox").await == 0).then_some(())
    })
    .await;
    let mut records = probe.read(total, WAIT).await;
    records.extend(probe.read_until_quiet(Duration::from_millis(1500)).await);
    let highest = assert_per_stream_order(&records);
    assert_eq!(highest.len(), streams.len());
    assert_eq!(
        highest.values().sum::<i64>(),
        total as i64,
        "every appended event reached Kafka"
    );
}

#[tokio::test]
async fn an_event_the_producer_refuses_stops_the_relay_there_and_nothing_after_it_is_sent() {
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    let metadata = Metadata::for_command(Uuid::now_v7());
    let mut huge = event(3);
    // Larger than the producer's message.max.bytes (1 MB).
    huge.payload = serde_json::json!({ "blob": "x".repeat(1_200_000) });
    let mut positions = Vec::new();
    for (stream, events) in [
        (first, vec![event(1), event(2)]),
        (first, vec![huge, event(4)]),
        (second, vec![event(1)]),
    ] {
        let mut tx = db.pool.begin().await.unwrap();
        let appended = append(
            &mut tx,
            "orders",
            stream,
            ExpectedVersion::Any,
            &events,
            &metadata,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        positions.extend(appended.events.iter().map(|e| e.global_position));
    }

    let probe = kafka.probe(&["orders"]);
    let _relay = start_relay(&db, kafka.config.clone(), 2);
    let delivered = probe.read(2, WAIT).await;
    let versions: Vec<i64> = delivered
        .iter()
        .map(|r| r.value["stream_version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2]);
    assert!(delivered.iter().all(|r| r.key == first.to_string()));
    // The relay keeps retrying the refused event and sends nothing after it.
    let later = probe.read_until_quiet(Duration::from_millis(2000)).await;
    assert!(
        later
            .iter()
            .all(|r| r.value["stream_version"].as_i64() <= Some(2) && r.key == first.to_string()),
        "something after the refused event was sent: {later:?}"
    );
    let left: Vec<i64> =
        sqlx::query_scalar("SELECT global_position FROM eventstore.outbox ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        left,
        positions[2..],
        "exactly the refused event and what follows it remain"
    );
}
