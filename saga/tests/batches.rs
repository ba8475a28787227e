//! Several events in one transaction: each is deduped by its id, so a batch
//! redelivered after a crash (committed, offsets not stored) changes
//! nothing; the first event that fails in a batch fails alone, the events
//! before it commit, and the consumer handles it as it always did.

mod common;

use std::time::Duration;

use common::{poison, Rig, WAIT};
use eventstore::EventEnvelope;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::TopicPartitionList;
use saga::handler::Handled;
use saga::Handler;

/// Ids and versions of every event in the log.
async fn log_of(rig: &Rig) -> Vec<(uuid::Uuid, i64)> {
    rig.log()
        .await
        .iter()
        .map(|e| (e.event_id, e.stream_version))
        .collect()
}

#[tokio::test]
async fn a_batch_redelivered_after_its_commit_changes_nothing() {
    let rig = Rig::start().await;
    let products = rig.products(2, 100).await;
    let orders = rig.orders(3, &products).await;
    let mut events = Vec::new();
    for order in &orders {
        events.push(rig.first_event(*order).await);
    }
    let batch: Vec<&EventEnvelope> = events.iter().collect();
    let handler = Handler::new(rig.db.pool.clone(), common::policy());

    let first = handler.handle_batch(&batch).await.unwrap();
    assert!(first.failed.is_none(), "{:?}", first.failed);
    assert_eq!(first.handled.len(), 3);
    for (outcome, order) in first.handled.iter().zip(&orders) {
        assert_eq!(
            *outcome,
            Handled::Applied {
                order_id: *order,
                effect_due: true
            }
        );
        assert_eq!(
            rig.stream(*order).await,
            ["OrderPlaced", "OrderAwaitingPayment"]
        );
    }
    let log = log_of(&rig).await;

    // The crash: offsets never stored, so the same batch comes again, and
    // one of its events alone too.
    let again = handler.handle_batch(&batch).await.unwrap();
    assert!(again.failed.is_none());
    assert_eq!(again.handled, vec![Handled::Duplicate; 3]);
    assert_eq!(
        handler.handle(&events[1]).await.unwrap(),
        Handled::Duplicate
    );
    assert_eq!(log_of(&rig).await, log, "the log is unchanged");
    assert_eq!(
        rig.count("SELECT count(*) FROM saga.processed_events")
            .await,
        3
    );
}

#[tokio::test]
async fn a_poison_event_fails_alone_in_a_batch_and_the_events_before_it_commit() {
    let rig = Rig::start().await;
    let products = rig.products(1, 100).await;
    let orders = rig.orders(2, &products).await;
    let (before, after) = (
        rig.first_event(orders[0]).await,
        rig.first_event(orders[1]).await,
    );
    let poison = poison(products[0]);
    let handler = Handler::new(rig.db.pool.clone(), common::policy());

    let outcome = handler
        .handle_batch(&[&before, &poison, &after])
        .await
        .unwrap();
    let error = outcome.failed.expect("the poison event fails");
    assert!(error.to_string().contains("refused"), "{error}");
    assert_eq!(outcome.handled.len(), 1, "only the event before it");
    assert_eq!(
        rig.stream(orders[0]).await,
        ["OrderPlaced", "OrderAwaitingPayment"]
    );
    assert_eq!(rig.stream(orders[1]).await, ["OrderPlaced"], "not yet");
    assert_eq!(
        rig.product(products[0]).await.reserved,
        1,
        "the poison's reservation rolled back, the first order's kept"
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM saga.processed_events")
            .await,
        1,
        "the poison and the event after it are not marked processed"
    );

    // The rest of the batch goes on without it.
    let rest = handler.handle_batch(&[&after]).await.unwrap();
    assert!(rest.failed.is_none());
    assert!(matches!(rest.handled[..], [Handled::Applied { .. }]));
    assert_eq!(rig.product(products[0]).await.reserved, 2);
}

async fn publish(rig: &Rig, event: &EventEnvelope) {
    let producer: FutureProducer = rig.kafka.config.client_config().create().unwrap();
    let record = serde_json::to_vec(event).unwrap();
    let key = event.stream_id.to_string();
    producer
        .send(
            FutureRecord::to(&rig.kafka.config.topic_for("orders"))
                .key(&key)
                .payload(&record),
            Duration::from_secs(5),
        )
        .await
        .expect("publish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_parks_a_poison_event_of_a_batch_and_settles_the_others() {
    let rig = Rig::start().await;
    let products = rig.products(2, 100).await;
    // One lane, so the backlog is handled in batches that hold the poison.
    let orders = rig.orders(10, &products).await;
    let poison = poison(products[0]);
    publish(&rig, &poison).await;
    let more = rig.orders(10, &products).await;
    rig.relayed().await;
    let mut settings = rig.settings();
    settings.lanes = 1;
    let worker = rig.start_worker(settings);
    rig.settled(orders.len() + more.len()).await;
    let parked = testkit::eventually("the poison is parked", WAIT, || async {
        saga::dead_letter::list(&rig.db.pool, false)
            .await
            .unwrap()
            .into_iter()
            .next()
    })
    .await;
    worker.stop().await;
    assert_eq!(parked.event_id, Some(poison.event_id));
    assert_eq!(parked.attempts, 3, "parked after the configured attempts");
    for order in orders.iter().chain(&more) {
        assert_eq!(
            rig.stream(*order).await,
            ["OrderPlaced", "OrderAwaitingPayment", "OrderConfirmed"]
        );
    }
    let sold: i64 = {
        let mut sold = 0;
        for product in &products {
            let p = rig.product(*product).await;
            assert_eq!(p.reserved, 0, "the poison kept nothing: {p:?}");
            sold += p.sold;
        }
        sold
    };
    assert_eq!(sold, 30, "ten one-line and ten two-line orders");
}

/// Whether the group has committed, on every partition of the event
/// topics, the offset after the last message.
fn caught_up(rig: &Rig, group: &str) -> bool {
    let consumer: BaseConsumer = rig
        .kafka
        .config
        .client_config()
        .set("group.id", group)
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    for topic in rig.kafka.config.event_topics() {
        for partition in 0..rig.kafka.config.partitions {
            partitions.add_partition(&topic, partition);
        }
    }
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(5))
        .unwrap();
    committed.elements().iter().all(|element| {
        let (_, high) = consumer
            .fetch_watermarks(element.topic(), element.partition(), Duration::from_secs(5))
            .unwrap();
        high == 0 || element.offset().to_raw() == Some(high)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_delivered_again_to_a_fresh_consumer_is_a_duplicate() {
    let rig = Rig::start().await;
    let products = rig.products(3, 1_000).await;
    let orders = rig.orders(60, &products).await;
    rig.relayed().await;
    let settings = rig.settings();
    let first_group = settings.group_id.clone();
    let worker = rig.start_worker(settings);
    rig.settled(orders.len()).await;
    rig.relayed().await;
    testkit::eventually("the worker has handled everything", WAIT, || async {
        caught_up(&rig, &first_group).then_some(())
    })
    .await;
    worker.stop().await;
    let log = log_of(&rig).await;
    let sagas = rig
        .count("SELECT count(*) FROM saga.order_sagas WHERE phase = 'CONFIRMED'")
        .await;
    let processed = rig
        .count("SELECT count(*) FROM saga.processed_events")
        .await;

    // As if every batch had committed and no offset had: a consumer of a new
    // group gets every message again, from the start.
    let mut settings = rig.settings();
    settings.group_id.push_str("-after-crash");
    let group = settings.group_id.clone();
    let worker = rig.start_worker(settings);
    testkit::eventually("the new group has handled everything", WAIT, || async {
        caught_up(&rig, &group).then_some(())
    })
    .await;
    worker.stop().await;
    assert_eq!(log_of(&rig).await, log, "the log is unchanged");
    assert_eq!(
        rig.count("SELECT count(*) FROM saga.order_sagas WHERE phase = 'CONFIRMED'")
            .await,
        sagas
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM saga.processed_events")
            .await,
        processed,
        "every event was a duplicate"
    );
    assert_eq!(rig.count("SELECT count(*) FROM saga.dead_letters").await, 0);
}

/// The echo of what the saga appended itself (its `StockReserved` coming
/// back through Kafka) changes nothing, so it must not queue behind other
/// orders holding the product: handled alone or in a batch, it takes no
/// product lock while another transaction holds the product's stream row.
#[tokio::test]
async fn an_echo_the_saga_already_took_in_waits_for_no_product_lock() {
    let rig = Rig::start().await;
    let products = rig.products(1, 100).await;
    let orders = rig.orders(2, &products).await;
    let handler = Handler::new(rig.db.pool.clone(), common::policy());
    for order in &orders {
        handler
            .handle(&rig.first_event(*order).await)
            .await
            .unwrap();
    }
    let echoes: Vec<EventEnvelope> = rig
        .log()
        .await
        .into_iter()
        .filter(|e| e.event_type == "StockReserved")
        .collect();
    assert_eq!(echoes.len(), 2);
    let log = log_of(&rig).await;

    // Another order of the product holds its stream row.
    let mut holder = rig.db.pool.begin().await.unwrap();
    sqlx::query("SELECT version FROM eventstore.streams WHERE stream_id = $1 FOR UPDATE")
        .bind(products[0])
        .execute(&mut *holder)
        .await
        .unwrap();

    let alone = tokio::time::timeout(Duration::from_secs(5), handler.handle(&echoes[0]))
        .await
        .expect("the echo waited for the product's lock")
        .unwrap();
    assert_eq!(
        alone,
        Handled::Applied {
            order_id: orders[0],
            effect_due: false
        }
    );
    let batch: Vec<&EventEnvelope> = echoes.iter().collect();
    let together = tokio::time::timeout(Duration::from_secs(5), handler.handle_batch(&batch))
        .await
        .expect("the batch of echoes waited for the product's lock")
        .unwrap();
    assert!(together.failed.is_none(), "{:?}", together.failed);
    assert_eq!(
        together.handled,
        [
            Handled::Duplicate,
            Handled::Applied {
                order_id: orders[1],
                effect_due: false
            }
        ]
    );
    holder.rollback().await.unwrap();
    assert_eq!(log_of(&rig).await, log, "an echo appends nothing");
}
