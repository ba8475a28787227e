//! Parking behind a dead letter and re-driving it exclude each other: an
//! event is never parked behind a letter a re-drive has just cleared (it
//! would wait there for good). The re-drive holds the order's lock while it
//! clears the order's letters; the consumer checks and parks under it.

use std::time::Duration;

use saga::dead_letter::{self, DeadLetters, Letter};
use testkit::{TestDatabase, TestKafka};
use uuid::Uuid;

fn letter(topic: &str, offset: i64) -> Letter {
    Letter {
        topic: topic.to_owned(),
        partition: 0,
        offset,
        key: None,
        payload: "{}".into(),
        headers: Vec::new(),
    }
}

#[tokio::test]
async fn an_event_waits_for_a_redrive_in_progress_and_is_then_not_parked() {
    let db = TestDatabase::create().await;
    let kafka = TestKafka::create().await;
    let topic = kafka.config.topic_for("orders");
    let letters = DeadLetters::new(db.pool.clone(), &kafka.config).unwrap();
    let order_id = Uuid::now_v7();
    letters
        .park(
            &letter(&topic, 0),
            "poison",
            3,
            Some(Uuid::now_v7()),
            Some(order_id),
        )
        .await
        .unwrap();

    // Behind a parked letter: parked.
    let blocker = letters
        .park_behind(&letter(&topic, 1), Uuid::now_v7(), order_id)
        .await
        .unwrap();
    assert!(blocker.is_some());

    // A re-drive holds the order's lock while it clears the letters.
    let mut redrive = db.pool.begin().await.unwrap();
    dead_letter::lock_order(&mut redrive, order_id)
        .await
        .unwrap();
    let consumer = {
        let letters = DeadLetters::new(db.pool.clone(), &kafka.config).unwrap();
        let topic = topic.clone();
        tokio::spawn(async move {
            letters
                .park_behind(&letter(&topic, 2), Uuid::now_v7(), order_id)
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !consumer.is_finished(),
        "the consumer waits for the re-drive"
    );
    sqlx::query("UPDATE saga.dead_letters SET status = 'redriven' WHERE order_id = $1")
        .bind(order_id)
        .execute(&mut *redrive)
        .await
        .unwrap();
    redrive.commit().await.unwrap();

    assert_eq!(
        consumer.await.unwrap(),
        None,
        "the order is clear: the event is handled, not parked"
    );
    let parked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM saga.dead_letters WHERE order_id = $1 AND status = 'parked'",
    )
    .bind(order_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(parked, 0);
}
