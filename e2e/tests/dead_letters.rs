//! The saga worker's dead-letter queue: a message it cannot parse, or an
//! event it cannot process after bounded attempts, goes to `<topic>.dlq`
//! and `saga.dead_letters`; the worker goes on; later events of the same
//! order are parked behind it; re-driving processes them in order.

use std::time::Duration;

use domain::order::{OrderEvent, OrderLine};
use e2e::System;
use eventstore::{EventEnvelope, ExpectedVersion, Metadata, NewEvent};
use rdkafka::producer::{FutureProducer, FutureRecord};
use testkit::eventually;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

async fn publish(system: &System, topic: &str, key: &str, value: &[u8]) {
    let producer: FutureProducer = system.kafka.config.client_config().create().unwrap();
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(5),
        )
        .await
        .expect("publish");
}

async fn dead_letters(system: &System) -> Vec<saga::dead_letter::DeadLetter> {
    saga::dead_letter::list(&system.db.pool, true)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_unparseable_message_is_dead_lettered_with_its_origin_and_the_worker_goes_on() {
    let system = System::start().await;
    let topic = system.kafka.config.topic_for("orders");
    let dlq_probe = testkit::KafkaProbe::new(
        &system.kafka.config,
        &[platform::kafka::KafkaConfig::dead_letter_topic(&topic)],
    );
    publish(&system, &topic, "garbage", b"{not json").await;

    let parked = eventually("the garbage is parked", WAIT, || async {
        dead_letters(&system).await.into_iter().next()
    })
    .await;
    assert!(
        parked.reason.starts_with("unparseable envelope"),
        "{}",
        parked.reason
    );
    assert_eq!(parked.topic, topic);
    assert_eq!(parked.status, "parked");

    // The projector parks it too; the copies tell their consumers apart.
    let records = dlq_probe.read(2, WAIT).await;
    let copy = |consumer: &str| {
        records
            .iter()
            .find(|r| r.headers.get("dlq_consumer").map(String::as_str) == Some(consumer))
            .unwrap_or_else(|| panic!("{consumer}'s copy on the .dlq topic: {records:?}"))
    };
    assert!(copy("projector").headers["dlq_reason"].starts_with("undecodable"));
    let headers = &copy("saga").headers;
    assert!(headers["dlq_reason"].starts_with("unparseable envelope"));
    assert_eq!(headers["dlq_source_topic"], topic);
    assert_eq!(headers["dlq_source_offset"], parked.offset.to_string());
    assert_eq!(headers["dlq_attempts"], "1");

    // The worker went on.
    let mug = system.product("Mug", 500, 5).await;
    let order = system.order("alice", &[(&mug, 1)], "tok_ok").await;
    assert_eq!(
        system.terminal_order(&order, WAIT).await["status"],
        "CONFIRMED"
    );
}

#[tokio::test]
async fn a_poison_event_is_parked_after_bounded_attempts_later_events_of_its_order_wait_and_redrive_completes_them(
) {
    let system = System::start().await;
    let mug = system.product("Mug", 500, 5).await;
    let topic = system.kafka.config.topic_for("orders");

    // An OrderPlaced for an order that is not in the log: the saga reserves,
    // then cannot move the order on, again and again.
    let order_id = Uuid::now_v7();
    let lines = vec![OrderLine {
        product_id: mug.parse().unwrap(),
        quantity: 1,
        unit_price_cents: 500,
    }];
    let placed = OrderEvent::OrderPlaced {
        user_id: "alice".into(),
        lines,
        total_cents: 500,
        payment_token: "tok_ok".into(),
        placed_at: chrono::Utc::now(),
    };
    let poison = EventEnvelope {
        event_id: Uuid::now_v7(),
        stream_id: order_id,
        stream_type: "orders".into(),
        stream_version: 1,
        global_position: 0,
        event_type: "OrderPlaced".into(),
        schema_version: 1,
        recorded_at: chrono::Utc::now(),
        payload: domain::DomainEvent::to_payload(&placed),
        metadata: Metadata::for_command(Uuid::now_v7()),
    };
    publish(
        &system,
        &topic,
        &order_id.to_string(),
        &serde_json::to_vec(&poison).unwrap(),
    )
    .await;
    let first = eventually("the poison event is parked", WAIT, || async {
        dead_letters(&system).await.into_iter().next()
    })
    .await;
    assert_eq!(first.order_id, Some(order_id));
    assert_eq!(first.attempts, 3, "parked after the configured attempts");
    assert!(first.reason.contains("refused"), "{}", first.reason);
    // Nothing it tried stuck: the reservation rolled back with the transaction.
    let product_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM eventstore.events WHERE stream_id = $1")
            .bind(mug.parse::<Uuid>().unwrap())
            .fetch_one(&system.db.pool)
            .await
            .unwrap();
    assert_eq!(
        product_events, 1,
        "only ProductRegistered: no reservation was kept"
    );

    // Now the order really is placed: its OrderPlaced reaches the saga, and
    // waits behind the parked event of the same order.
    let mut tx = system.db.pool.begin().await.unwrap();
    eventstore::append(
        &mut tx,
        "orders",
        order_id,
        ExpectedVersion::Exact(0),
        &[NewEvent::from_domain(&placed)],
        &Metadata::for_command(Uuid::now_v7()),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let blocked = eventually("the real event is parked behind", WAIT, || async {
        let letters = dead_letters(&system).await;
        (letters.len() == 2).then(|| letters[1].clone())
    })
    .await;
    assert_eq!(
        blocked.reason,
        format!("blocked by dead letter #{} of order {order_id}", first.id)
    );

    // Re-drive everything, oldest first: the order completes.
    let handler = saga::Handler::new(
        system.db.pool.clone(),
        domain::saga::SagaPolicy {
            payment_deadline: chrono::Duration::seconds(3),
            currency: "EUR".into(),
        },
    );
    let results = saga::dead_letter::redrive(&system.db.pool, &handler, None)
        .await
        .unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.outcome.is_ok()), "{results:?}");
    assert!(dead_letters(&system)
        .await
        .iter()
        .all(|l| l.status == "redriven"));
    let order = system.terminal_order(&order_id.to_string(), WAIT).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
}
