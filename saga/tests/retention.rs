//! Retention of the saga's dedup rows against the real log and broker: a
//! row goes only once the group has committed past a checkpoint taken
//! after its event left the outbox, and pruning never lets a redelivered
//! event take effect twice.

use std::time::Duration;

use eventstore::EventEnvelope;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use saga::handler::Handled;
use saga::retention::{DedupPruner, GroupProgress, RetentionSettings, Step};
use testkit::{TestDatabase, TestKafka};
use uuid::Uuid;

mod common;

/// One pruner step; a Kafka error (a coordinator still loading on a fresh
/// broker) is retried, as the worker retries at its next step.
async fn step(pruner: &mut DedupPruner) -> Step {
    for attempt in 1.. {
        match pruner.step().await {
            Ok(step) => return step,
            Err(saga::retention::RetentionError::Kafka(error)) if attempt < 20 => {
                eprintln!("kafka error ({error}); retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => panic!("pruner step failed: {error}"),
        }
    }
    unreachable!()
}

const GROUP: &str = "saga";

struct Rig {
    db: TestDatabase,
    kafka: TestKafka,
    group: String,
}

impl Rig {
    async fn new() -> Self {
        Self {
            db: TestDatabase::create().await,
            kafka: TestKafka::create().await,
            group: format!("{GROUP}-{}", Uuid::new_v4().simple()),
        }
    }

    fn pruner(&self, margin: Duration) -> DedupPruner {
        let progress = GroupProgress::new(
            &self.kafka.config,
            &self.group,
            self.kafka.config.event_topics(),
        )
        .unwrap();
        DedupPruner::new(
            self.db.pool.clone(),
            progress,
            RetentionSettings {
                interval: Duration::from_secs(3600),
                margin,
                batch: 2,
            },
        )
    }

    fn handler(&self) -> saga::Handler {
        saga::Handler::new(self.db.pool.clone(), common::policy())
    }

    /// A product and an order on it, appended to the log (with outbox rows).
    async fn product_and_order(&self) -> (EventEnvelope, EventEnvelope) {
        common::product_and_order(&self.db.pool).await
    }

    /// What the relay does for `event`: publish a copy, and delete its
    /// outbox row only if the broker's acknowledgement arrived.
    async fn relay(&self, event: &EventEnvelope, acknowledged: bool) {
        let producer: FutureProducer = self.kafka.config.client_config().create().unwrap();
        let topic = self.kafka.config.topic_for(&event.stream_type);
        let payload = serde_json::to_string(event).unwrap();
        let key = event.stream_id.to_string();
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(error, _)| error)
            .unwrap();
        if acknowledged {
            sqlx::query("DELETE FROM eventstore.outbox WHERE global_position = $1")
                .bind(event.global_position)
                .execute(&self.db.pool)
                .await
                .unwrap();
        }
    }

    async fn mark_processed(&self, event: &EventEnvelope) {
        let mut conn = self.db.pool.acquire().await.unwrap();
        assert!(saga::store::mark_processed(&mut conn, event.event_id)
            .await
            .unwrap());
    }

    async fn processed(&self, event: &EventEnvelope) -> bool {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM saga.processed_events WHERE event_id = $1)",
        )
        .bind(event.event_id)
        .fetch_one(&self.db.pool)
        .await
        .unwrap()
    }

    /// The saga group commits every partition up to its current end.
    async fn group_catches_up(&self) {
        let consumer: BaseConsumer = self
            .kafka
            .config
            .client_config()
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut offsets = TopicPartitionList::new();
        for topic in self.kafka.config.event_topics() {
            for partition in 0..self.kafka.config.partitions {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                    .unwrap();
                if high > low {
                    offsets
                        .add_partition_offset(&topic, partition, Offset::Offset(high))
                        .unwrap();
                }
            }
        }
        // A broker's first group request may find the coordinator still
        // loading: retry that, as the worker would.
        let consumer = std::sync::Arc::new(consumer);
        for attempt in 1.. {
            let (consumer, offsets) = (consumer.clone(), offsets.clone());
            match tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync))
                .await
                .unwrap()
            {
                Ok(()) => return,
                Err(error) if attempt < 20 => {
                    eprintln!("commit failed ({error}); retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => panic!("cannot commit the group's offsets: {error}"),
            }
        }
    }

    async fn events_in_log(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM eventstore.events")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn rows_stay_until_the_group_is_past_the_checkpoint_and_an_unconfirmed_event_keeps_its_row() {
    let rig = Rig::new().await;
    let (registered, placed) = rig.product_and_order().await;
    let handler = rig.handler();
    rig.mark_processed(&registered).await;
    assert!(matches!(
        handler.handle(&placed).await.unwrap(),
        Handled::Applied { .. }
    ));
    // The product event was delivered and confirmed; the order event was
    // published but its acknowledgement was lost, so the relay will publish
    // it again: its outbox row stays.
    rig.relay(&registered, true).await;
    rig.relay(&placed, false).await;

    let mut pruner = rig.pruner(Duration::ZERO);
    assert_eq!(step(&mut pruner).await, Step::CheckpointTaken);
    let checkpoint = pruner.checkpoint().unwrap().clone();
    assert_eq!(
        checkpoint.settled_position,
        placed.global_position - 1,
        "the order event's outbox row bounds what is settled"
    );
    assert!(checkpoint.marks.iter().filter(|m| m.high > m.low).count() >= 2);

    // The group has committed nothing yet: nothing goes, however often asked.
    for _ in 0..2 {
        assert!(matches!(
            step(&mut pruner).await,
            Step::GroupBehind { partitions } if partitions >= 2
        ));
    }
    assert!(rig.processed(&registered).await && rig.processed(&placed).await);

    rig.group_catches_up().await;
    assert_eq!(step(&mut pruner).await, Step::Pruned { rows: 1 });
    assert!(
        !rig.processed(&registered).await,
        "settled and consumed: pruned"
    );
    assert!(rig.processed(&placed).await, "still in the outbox: kept");

    // The relay publishes the order event again; the saga gets it again.
    rig.relay(&placed, true).await;
    let before = rig.events_in_log().await;
    assert_eq!(handler.handle(&placed).await.unwrap(), Handled::Duplicate);
    assert_eq!(
        rig.events_in_log().await,
        before,
        "no effect the second time"
    );

    // The next round settles it too, once the group is past the new copy.
    assert_eq!(step(&mut pruner).await, Step::CheckpointTaken);
    assert!(matches!(step(&mut pruner).await, Step::GroupBehind { .. }));
    rig.group_catches_up().await;
    assert_eq!(step(&mut pruner).await, Step::Pruned { rows: 1 });
    assert!(!rig.processed(&placed).await);
}

#[tokio::test]
async fn young_rows_rows_after_the_checkpoint_and_rows_of_parked_letters_are_kept() {
    let rig = Rig::new().await;
    let (first, first_order) = rig.product_and_order().await;
    let (parked, later) = rig.product_and_order().await;
    for event in [&first, &first_order, &parked, &later] {
        rig.relay(event, true).await;
    }
    rig.mark_processed(&first).await;
    rig.mark_processed(&first_order).await;
    rig.mark_processed(&parked).await;
    // A later copy of `parked` waits in the dead-letter queue: re-driving
    // it must still find the row.
    sqlx::query(
        "INSERT INTO saga.dead_letters
             (topic, partition, \"offset\", payload, headers, event_id, reason, attempts)
         VALUES ('t', 0, 0, '{}', '{}', $1, 'blocked by dead letter #0', 1)",
    )
    .bind(parked.event_id)
    .execute(&rig.db.pool)
    .await
    .unwrap();

    // A margin of an hour keeps everything written just now.
    let mut cautious = rig.pruner(Duration::from_secs(3600));
    assert_eq!(step(&mut cautious).await, Step::CheckpointTaken);
    let mut pruner = rig.pruner(Duration::ZERO);
    assert_eq!(step(&mut pruner).await, Step::CheckpointTaken);
    // Handled after the checkpoint: the checkpoint cannot vouch for it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    rig.mark_processed(&later).await;

    rig.group_catches_up().await;
    assert_eq!(step(&mut cautious).await, Step::Pruned { rows: 0 });
    // Two rows with batches of two: the loop runs past a full batch.
    assert_eq!(step(&mut pruner).await, Step::Pruned { rows: 2 });
    assert!(!rig.processed(&first).await && !rig.processed(&first_order).await);
    assert!(rig.processed(&parked).await, "a parked letter refers to it");
    assert!(rig.processed(&later).await, "written after the checkpoint");
}
