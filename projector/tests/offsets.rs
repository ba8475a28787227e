//! Kafka offsets move only after the PostgreSQL transaction committed
//! (guarantee 5): a message whose transaction failed is delivered again.

mod common;

use std::time::Duration;

use common::{Harness, SETTLE};
use platform::db::DbConfig;
use platform::kafka::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use testkit::TcpProxy;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offsets_are_committed_only_after_the_read_model_commit() {
    let h = Harness::new().await;
    let group = h.group();
    let proxy = TcpProxy::start(testkit::database::server_address(&h.db.url).await).await;
    proxy.cut();
    let mut db = DbConfig::new(testkit::database::with_address(&h.db.url, proxy.address()));
    db.max_connections = 2;
    db.acquire_timeout_ms = 500;
    let cut_pool = platform::db::connect_lazy(&db).unwrap();

    let p1 = Uuid::now_v7();
    let registered = h.register(p1, "Lamp", 1000, 5).await;
    let topic = h.kafka.config.topic_for("inventory");
    let (partition, offset) = h.publish(&[registered]).await[0];

    // The database is unreachable: the message is retried, its offset not committed.
    let first = common::RunningConsumer::start(cut_pool.clone(), &h, &group);
    let stats = first.stats.clone();
    testkit::eventually("retries while the database is down", SETTLE, || {
        let retries = stats.retries();
        async move { (retries >= 3).then_some(()) }
    })
    .await;
    // Longer than the auto-commit interval.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        committed(&h.kafka.config, &group, &topic, partition).await,
        Offset::Invalid
    );
    first.stop().await;
    assert_eq!(
        committed(&h.kafka.config, &group, &topic, partition).await,
        Offset::Invalid,
        "stopping must not commit an unprocessed message"
    );
    assert_eq!(common::lagging_streams(h.pool()).await, 1);

    // Back up: a new instance of the group gets the same message again.
    proxy.restore();
    let second = common::RunningConsumer::start(cut_pool, &h, &group);
    h.wait_projected().await;
    let config = h.kafka.config.clone();
    let (group2, topic2) = (group.clone(), topic.clone());
    testkit::eventually("the offset to be committed", SETTLE, || {
        let (config, group, topic) = (config.clone(), group2.clone(), topic2.clone());
        async move {
            (committed(&config, &group, &topic, partition).await == Offset::Offset(offset + 1))
                .then_some(())
        }
    })
    .await;
    second.stop().await;

    // Once committed, it is not delivered again.
    let p2 = Uuid::now_v7();
    let third = h.consumer(&group);
    h.publish(&[h.register(p2, "Bulb", 10, 1).await]).await;
    h.wait_projected().await;
    assert_eq!(third.stats.received(), 1);
    third.stop().await;
}

/// The group's committed offset of one partition.
async fn committed(kafka: &KafkaConfig, group: &str, topic: &str, partition: i32) -> Offset {
    let config = kafka.clone();
    let (group, topic) = (group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config
            .client_config()
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("create offset checker");
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition(&topic, partition);
        let committed = consumer
            .committed_offsets(partitions, Duration::from_secs(10))
            .expect("fetch committed offsets");
        committed
            .find_partition(&topic, partition)
            .expect("partition in answer")
            .offset()
    })
    .await
    .unwrap()
}
