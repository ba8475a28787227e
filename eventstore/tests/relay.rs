//! Guarantee 4: the relay publishes every committed event — including one
//! whose transaction took an earlier position but committed later — with
//! per-stream order preserved in Kafka.

mod common;
mod relay_support;

use std::time::Duration;

use common::{append_committed, count, event};
use eventstore::relay::{Relay, RelayConfig, RelayRole};
use eventstore::{append, EventEnvelope, ExpectedVersion, Metadata};
use relay_support::assert_per_stream_order;
use testkit::{eventually, TestDatabase, TestKafka};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

fn start_relay(
    db: &TestDatabase,
    kafka: &TestKafka,
    batch_size: i64,
) -> (CancellationToken, tokio::sync::watch::Receiver<RelayRole>) {
    let config = RelayConfig {
        batch_size,
        poll_interval_ms: 100,
        standby_retry_ms: 100,
        ..RelayConfig::default()
    };
    let relay = Relay::new(db.pool.clone(), kafka.config.clone(), config).expect("relay");
    let role = relay.role();
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move { relay.run(stop).await });
    (token, role)
}

#[tokio::test]
async fn relay_publishes_envelopes_keyed_by_stream_with_id_headers() {
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    let order = Uuid::now_v7();
    let mut metadata = Metadata::for_command(Uuid::now_v7());
    metadata.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    let mut tx = db.pool.begin().await.unwrap();
    let appended = append(
        &mut tx,
        "orders",
        order,
        ExpectedVersion::Exact(0),
        &[event(1), event(2)],
        &metadata,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let probe = kafka.probe(&["orders"]);
    let (_relay, _) = start_relay(&db, &kafka, 100);
    let records = probe.read(2, WAIT).await;
    assert_eq!(records.len(), 2);
    for (record, sent) in records.iter().zip(&appended.events) {
        assert_eq!(record.topic, kafka.config.topic_for("orders"));
        assert_eq!(record.key, order.to_string());
        let envelope: EventEnvelope = serde_json::from_value(record.value.clone()).unwrap();
        assert_eq!(&envelope, sent);
        assert_eq!(record.headers["event_id"], sent.event_id.to_string());
        assert_eq!(record.headers["stream_id"], order.to_string());
        assert_eq!(record.headers["stream_type"], "orders");
        assert_eq!(record.headers["event_type"], "TestHappened");
        assert_eq!(
            record.headers["correlation_id"],
            metadata.correlation_id.to_string()
        );
        assert_eq!(
            record.headers["causation_id"],
            metadata.causation_id.to_string()
        );
        assert_eq!(
            record.headers["traceparent"],
            metadata.traceparent.clone().unwrap()
        );
    }
    // Acknowledged rows leave the outbox.
    eventually("outbox drained", WAIT, || async {
        (count(&db.pool, "eventstore.outbox").await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn relay_never_skips_an_event_whose_transaction_commits_after_a_later_one() {
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    let probe = kafka.probe(&["orders"]);
    let (_relay, _) = start_relay(&db, &kafka, 100);

    // A takes the earlier position but stays open…
    let (early, late) = (Uuid::now_v7(), Uuid::now_v7());
    let mut slow = db.pool.begin().await.unwrap();
    let early_append = append(
        &mut slow,
        "orders",
        early,
        ExpectedVersion::Exact(0),
        &[event(1)],
        &Metadata::for_command(Uuid::now_v7()),
    )
    .await
    .unwrap();
    // …while B takes a later position and commits first.
    let late_append = append_committed(
        &db.pool,
        "orders",
        late,
        ExpectedVersion::Exact(0),
        &[event(2)],
    )
    .await
    .unwrap();
    assert!(early_append.last_position < late_append.last_position);

    let first = probe.read(1, WAIT).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].key, late.to_string());
    // Give the relay time to move past the gap, then commit A.
    tokio::time::sleep(Duration::from_millis(500)).await;
    slow.commit().await.unwrap();

    let second = probe.read(1, WAIT).await;
    assert_eq!(second.len(), 1, "the late-committed event was skipped");
    assert_eq!(second[0].key, early.to_string());
}

#[tokio::test]
async fn concurrent_appends_with_slow_commits_all_arrive_in_stream_order() {
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    let probe = kafka.probe(&["orders"]);
    let (_relay, _) = start_relay(&db, &kafka, 7);

    let streams: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    let writers: Vec<_> = (0..40u64)
        .map(|n| {
            let pool = db.pool.clone();
            let stream = streams[n as usize % streams.len()];
            tokio::spawn(async move {
                loop {
                    let mut tx = pool.begin().await.unwrap();
                    let result = append(
                        &mut tx,
                        "orders",
                        stream,
                        ExpectedVersion::Any,
                        &[event(n as i64), event(n as i64)],
                        &Metadata::for_command(Uuid::now_v7()),
                    )
                    .await;
                    if result.is_err() {
                        continue;
                    }
                    // Hold the transaction open for a while: positions are
                    // taken now, commits happen out of position order.
                    tokio::time::sleep(Duration::from_millis((n * 37) % 120)).await;
                    tx.commit().await.unwrap();
                    return;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let records = probe.read(80, WAIT).await;
    assert_eq!(records.len(), 80, "every committed event is published");
    let highest = assert_per_stream_order(&records);
    assert_eq!(highest.values().sum::<i64>(), 80);
    let extra = probe.read_until_quiet(Duration::from_millis(500)).await;
    assert!(
        extra.is_empty(),
        "no duplicates without failures: {extra:?}"
    );
}

#[tokio::test]
async fn only_one_relay_is_active_and_a_standby_takes_over() {
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    let probe = kafka.probe(&["orders"]);
    let (first, mut first_role) = start_relay(&db, &kafka, 10);
    first_role
        .wait_for(|r| *r == RelayRole::Leader)
        .await
        .unwrap();
    let (_second, second_role) = start_relay(&db, &kafka, 10);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        *second_role.borrow(),
        RelayRole::Standby,
        "two relays active at once"
    );

    let stream = Uuid::now_v7();
    for n in 1..=5 {
        append_committed(
            &db.pool,
            "orders",
            stream,
            ExpectedVersion::Any,
            &[event(n)],
        )
        .await
        .unwrap();
    }
    assert_eq!(probe.read(5, WAIT).await.len(), 5);

    first.cancel();
    let mut second_role = second_role;
    tokio::time::timeout(WAIT, second_role.wait_for(|r| *r == RelayRole::Leader))
        .await
        .expect("standby took over")
        .unwrap();
    for n in 6..=10 {
        append_committed(
            &db.pool,
            "orders",
            stream,
            ExpectedVersion::Any,
            &[event(n)],
        )
        .await
        .unwrap();
    }
    let records = probe.read(5, WAIT).await;
    let versions: Vec<i64> = records
        .iter()
        .map(|r| r.value["stream_version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [6, 7, 8, 9, 10]);
}

#[tokio::test]
async fn while_kafka_is_unreachable_nothing_leaves_the_outbox_and_a_later_relay_delivers_it_all() {
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    let stream = Uuid::now_v7();
    for n in 1..=3 {
        append_committed(
            &db.pool,
            "orders",
            stream,
            ExpectedVersion::Any,
            &[event(n)],
        )
        .await
        .unwrap();
    }

    // A relay whose broker is down: deliveries time out, nothing is removed.
    let unreachable =
        platform::kafka::KafkaConfig::new("127.0.0.1:1", kafka.config.topic_prefix.clone());
    let config = RelayConfig {
        poll_interval_ms: 100,
        delivery_timeout_ms: 1000,
        ..RelayConfig::default()
    };
    let relay = Relay::new(db.pool.clone(), unreachable, config).unwrap();
    let mut role = relay.role();
    let stop = CancellationToken::new();
    let handle = tokio::spawn({
        let stop = stop.clone();
        async move { relay.run(stop).await }
    });
    role.wait_for(|r| *r == RelayRole::Leader).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        count(&db.pool, "eventstore.outbox").await,
        3,
        "undelivered events left the outbox"
    );
    stop.cancel();
    handle.await.unwrap();

    // Once Kafka is reachable, everything arrives, in order.
    let probe = kafka.probe(&["orders"]);
    let (_relay, _) = start_relay(&db, &kafka, 100);
    let records = probe.read(3, WAIT).await;
    let versions: Vec<i64> = records
        .iter()
        .map(|r| r.value["stream_version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3]);
}
