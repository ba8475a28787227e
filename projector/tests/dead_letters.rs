//! Dead letters of the live projector against real Kafka and PostgreSQL:
//! a poison event in the log and a corrupt message for a good event are
//! parked (row and `<topic>.dlq` copy) with the later events of their
//! stream behind them, other streams go on, redelivery parks and applies
//! nothing twice, and re-drive applies a stream from the log in order (or
//! leaves a letter that fails again parked). (Replay of a log holding a
//! poison event fails clearly: `replay.rs`.)

mod common;

use std::time::Duration;

use common::{Harness, SETTLE};
use eventstore::{EventEnvelope, NewEvent};
use platform::kafka::KafkaConfig;
use projector::dead_letter::{self, DeadLetter, DeadLetters, Letter, Parked, Reapplied, Subject};
use serde_json::json;
use sqlx::PgPool;
use testkit::KafkaProbe;
use uuid::Uuid;

const ATTEMPTS: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_event_is_parked_after_its_tries_with_its_stream_behind_it() {
    let h = Harness::new().await;
    let (p1, p2) = (Uuid::now_v7(), Uuid::now_v7());
    let mut events = vec![
        h.register(p1, "Lamp", 1000, 5).await,
        h.register(p2, "Bulb", 500, 1).await,
    ];
    let poison = h.append("inventory", p1, &[discontinued()]).await.remove(0);
    events.push(poison.clone());
    let behind = h.restock(p1, 100).await;
    events.push(behind.clone());
    events.push(h.restock(p2, 4).await);
    let delivered = h.publish(&events).await;

    let consumer = h.consumer_with_attempts(&h.group(), ATTEMPTS);
    let stats = consumer.stats.clone();
    testkit::eventually("the poison and the event behind it parked", SETTLE, || {
        let stats = stats.clone();
        async move { (stats.parked() == 2 && stats.committed() == 3).then_some(()) }
    })
    .await;
    assert_eq!(
        consumer.stats.retries(),
        u64::from(ATTEMPTS - 1),
        "tried {ATTEMPTS} times in all"
    );
    consumer.stop().await;
    assert_eq!(
        stock(h.pool(), p1).await,
        Some((5, 1)),
        "nothing after the poison"
    );
    assert_eq!(
        stock(h.pool(), p2).await,
        Some((5, 2)),
        "the other stream goes on"
    );

    let letters = dead_letter::list(h.pool(), false).await.unwrap();
    assert_eq!(letters.len(), 2, "{letters:#?}");
    let topic = h.kafka.config.topic_for("inventory");
    let (first, second) = (&letters[0], &letters[1]);
    assert_letter_of(first, &poison, &topic, delivered[2]);
    assert!(
        first.reason.contains("ProductDiscontinued"),
        "{}",
        first.reason
    );
    assert_eq!(first.attempts, ATTEMPTS as i32);
    assert_letter_of(second, &behind, &topic, delivered[3]);
    assert_eq!(
        second.reason,
        format!("blocked by dead letter #{}", first.id)
    );
    assert_eq!(second.attempts, 0);
    let received: serde_json::Value = serde_json::from_str(&first.payload).unwrap();
    assert_eq!(
        received["event_id"],
        poison.event_id.to_string(),
        "the message as received"
    );
    assert_eq!(first.headers["event_id"], poison.event_id.to_string());

    // The copies on the dead-letter topic say why, where from, how often.
    let dlq = dlq_probe(&h.kafka.config, &topic);
    let copies = dlq.read(2, SETTLE).await;
    assert_eq!(copies.len(), 2);
    for (copy, (letter, attempts)) in copies.iter().zip([(first, "3"), (second, "0")]) {
        assert_eq!(copy.key, p1.to_string());
        assert_eq!(copy.headers["dlq_consumer"], "projector");
        assert_eq!(copy.headers["dlq_reason"], letter.reason);
        assert_eq!(copy.headers["dlq_source_topic"], topic);
        assert_eq!(
            copy.headers["dlq_source_partition"],
            letter.partition.to_string()
        );
        assert_eq!(copy.headers["dlq_source_offset"], letter.offset.to_string());
        assert_eq!(copy.headers["dlq_attempts"], attempts);
        assert_eq!(
            copy.headers["event_id"],
            letter.event_id.unwrap().to_string()
        );
        assert_eq!(
            copy.value,
            serde_json::from_str::<serde_json::Value>(&letter.payload).unwrap()
        );
    }

    // Redelivery of everything (a new group, from offset 0): no second row,
    // no second copy, nothing applied twice.
    let rows = h.snapshot().await;
    let again = h.consumer_with_attempts(&h.group(), ATTEMPTS);
    let stats = again.stats.clone();
    testkit::eventually("everything redelivered", SETTLE, || {
        let stats = stats.clone();
        async move { (stats.parked() + stats.committed() == 5).then_some(()) }
    })
    .await;
    again.stop().await;
    assert_eq!(dead_letter::list(h.pool(), true).await.unwrap(), letters);
    assert!(dlq
        .read_until_quiet(Duration::from_secs(3))
        .await
        .is_empty());
    assert_eq!(h.snapshot().await, rows);

    // Re-drive fails again: it stays parked, counted, and holds its stream.
    let results = dead_letter::redrive(h.pool(), None).await.unwrap();
    assert_eq!(
        results.len(),
        1,
        "the letter behind it is not tried: {results:?}"
    );
    assert_eq!(results[0].id, first.id);
    let error = results[0].outcome.as_ref().unwrap_err();
    assert!(error.contains("ProductDiscontinued"), "{error}");
    let now = dead_letter::show(h.pool(), first.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (now.status.as_str(), now.attempts),
        ("parked", ATTEMPTS as i32 + 1)
    );
    let behind_now = dead_letter::show(h.pool(), second.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (behind_now.status.as_str(), behind_now.attempts),
        ("parked", 0)
    );
    assert_eq!(stock(h.pool(), p1).await, Some((5, 1)));
    assert!(dead_letter::show(h.pool(), 999_999)
        .await
        .unwrap()
        .is_none());
    assert!(dead_letter::redrive(h.pool(), Some(999_999))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_message_is_parked_and_redriven_from_the_log_in_order() {
    let h = Harness::new().await;
    let (p1, p2) = (Uuid::now_v7(), Uuid::now_v7());
    let first = h.register(p1, "Lamp", 1000, 5).await;
    let corrupted = h.restock(p1, 1).await;
    let third = h.restock(p1, 10).await;
    let other = h.register(p2, "Bulb", 500, 1).await;
    h.publish(&[first]).await;
    h.publish_corrupt(&corrupted, b"{\"event_id\": tru").await;
    h.publish(&[third.clone(), other]).await;

    let group = h.group();
    let consumer = h.consumer_with_attempts(&group, ATTEMPTS);
    let stats = consumer.stats.clone();
    testkit::eventually(
        "the corrupt message and the event behind it parked",
        SETTLE,
        || {
            let stats = stats.clone();
            async move { (stats.parked() == 2 && stats.committed() == 2).then_some(()) }
        },
    )
    .await;
    assert_eq!(stock(h.pool(), p1).await, Some((5, 1)));
    assert_eq!(stock(h.pool(), p2).await, Some((1, 1)));
    let letters = dead_letter::list(h.pool(), false).await.unwrap();
    assert_eq!(letters.len(), 2, "{letters:#?}");
    assert!(
        letters[0]
            .reason
            .starts_with("undecodable: not an event envelope"),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[0].attempts, 1);
    assert_eq!(
        letters[0].event_id,
        Some(corrupted.event_id),
        "known from the headers"
    );
    assert_eq!(letters[0].stream_id, Some(p1));
    assert_eq!(letters[0].stream_version, Some(2));
    assert_eq!(letters[0].payload, "{\"event_id\": tru");
    assert_eq!(letters[1].event_id, Some(third.event_id));
    assert_eq!(
        letters[1].reason,
        format!("blocked by dead letter #{}", letters[0].id)
    );

    // A later batch: the stream is still parked, so its new event waits too.
    let fourth = h.restock(p1, 100).await;
    h.publish(&[fourth]).await;
    testkit::eventually("the later event parked behind", SETTLE, || {
        let stats = stats.clone();
        async move { (stats.parked() == 3).then_some(()) }
    })
    .await;
    assert_eq!(stock(h.pool(), p1).await, Some((5, 1)));

    // Re-driving a letter re-drives its stream, oldest first, from the log.
    let results = dead_letter::redrive(h.pool(), Some(letters[1].id))
        .await
        .unwrap();
    let ids: Vec<i64> = results.iter().map(|r| r.id).collect();
    let parked = dead_letter::list(h.pool(), true).await.unwrap();
    assert_eq!(ids, parked.iter().map(|l| l.id).collect::<Vec<_>>());
    assert!(
        results.iter().all(|r| r.outcome == Ok(Reapplied::Applied)),
        "{results:?}"
    );
    assert_eq!(stock(h.pool(), p1).await, Some((116, 4)));
    assert!(dead_letter::list(h.pool(), false).await.unwrap().is_empty());
    assert!(parked
        .iter()
        .all(|l| l.status == "redriven" && l.redriven_at.is_some()));

    // The stream is no longer held back.
    let fifth = h.restock(p1, 1000).await;
    h.publish(&[fifth]).await;
    testkit::eventually("the stream applied again", SETTLE, || {
        let pool = h.pool().clone();
        async move { (stock(&pool, p1).await == Some((1116, 5))).then_some(()) }
    })
    .await;
    consumer.stop().await;

    // Redelivered from offset 0: nothing parked again, nothing applied twice.
    let rows = h.snapshot().await;
    let again = h.consumer_with_attempts(&h.group(), ATTEMPTS);
    let stats = again.stats.clone();
    testkit::eventually("everything redelivered", SETTLE, || {
        let stats = stats.clone();
        async move { (stats.parked() + stats.committed() == 6).then_some(()) }
    })
    .await;
    again.stop().await;
    assert_eq!(dead_letter::list(h.pool(), true).await.unwrap(), parked);
    assert_eq!(h.snapshot().await, rows);
    h.replay(&[]).await;
    assert_eq!(
        h.snapshot().await,
        rows,
        "the re-driven rows are a fold of the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_known_only_by_its_key_holds_its_stream_and_redrive_catches_it_up_from_the_log() {
    let h = Harness::new().await;
    let p1 = Uuid::now_v7();
    let first = h.register(p1, "Lamp", 1000, 5).await;
    h.restock(p1, 1).await; // its message is lost (the raw one below)
    let third = h.restock(p1, 10).await;
    h.publish(&[first]).await;
    // No headers, a value that is not JSON: only the key names the stream.
    h.publish_raw("inventory", &p1.to_string(), b"\x00\x01")
        .await;
    // And one that names nothing at all.
    h.publish_raw("inventory", "garbage", b"??").await;
    h.publish(std::slice::from_ref(&third)).await;

    let consumer = h.consumer_with_attempts(&h.group(), ATTEMPTS);
    let stats = consumer.stats.clone();
    testkit::eventually("three parked", SETTLE, || {
        let stats = stats.clone();
        async move { (stats.parked() == 3).then_some(()) }
    })
    .await;
    consumer.stop().await;
    assert_eq!(stock(h.pool(), p1).await, Some((5, 1)));
    let letters = dead_letter::list(h.pool(), false).await.unwrap();
    let keyed = letters
        .iter()
        .find(|l| l.message_key == Some(p1.to_string()))
        .unwrap();
    assert_eq!((keyed.stream_id, keyed.event_id), (Some(p1), None));
    let nameless = letters.iter().find(|l| l.stream_id.is_none()).unwrap();

    let results = dead_letter::redrive(h.pool(), None).await.unwrap();
    assert_eq!(results.len(), 3, "{results:?}");
    let outcome = |id: i64| &results.iter().find(|r| r.id == id).unwrap().outcome;
    // The stream is brought up to date from the log, in order: its second
    // and third events, whatever the lost message was.
    assert_eq!(outcome(keyed.id), &Ok(Reapplied::Applied));
    let behind = letters
        .iter()
        .find(|l| l.event_id == Some(third.event_id))
        .unwrap();
    assert_eq!(outcome(behind.id), &Ok(Reapplied::Duplicate));
    assert_eq!(stock(h.pool(), p1).await, Some((16, 3)));
    let error = outcome(nameless.id).as_ref().unwrap_err();
    assert!(error.contains("names no event and no stream"), "{error}");
    let parked = dead_letter::list(h.pool(), false).await.unwrap();
    assert_eq!(
        parked.iter().map(|l| l.id).collect::<Vec<_>>(),
        [nameless.id]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parking_behind_a_letter_is_checked_again_under_the_streams_lock() {
    let h = Harness::new().await;
    let letters = DeadLetters::new(h.pool().clone(), &h.kafka.config).unwrap();
    let stream = Uuid::now_v7();
    let topic = h.kafka.config.topic_for("inventory");
    let letter = |offset| Letter {
        topic: topic.clone(),
        partition: 0,
        offset,
        key: Some(stream.to_string()),
        payload: "x".to_owned(),
        headers: Vec::new(),
    };
    let subject = Subject {
        stream_id: Some(stream),
        ..Subject::default()
    };
    let root = letters
        .park(&letter(5), &subject, "poison", 3)
        .await
        .unwrap();
    assert!(root.new);
    assert_eq!(
        letters
            .park(&letter(5), &subject, "again", 3)
            .await
            .unwrap(),
        Parked {
            id: root.id,
            new: false
        },
        "once per offset"
    );
    let behind = letters
        .park_behind(&letter(6), &subject, stream)
        .await
        .unwrap()
        .unwrap();
    let row = dead_letter::show(h.pool(), behind.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.reason, format!("blocked by dead letter #{}", root.id));
    assert_eq!(row.attempts, 0);
    assert_eq!(
        letters
            .park_behind(&letter(4), &subject, stream)
            .await
            .unwrap(),
        None,
        "a message from before the first letter is not held back"
    );

    // A re-drive clearing the stream under its lock: parking behind waits,
    // then finds the stream free instead of parking behind a cleared letter.
    let mut redrive = h.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('projector.dead_letters'), hashtext($1))")
        .bind(stream.to_string())
        .execute(&mut *redrive)
        .await
        .unwrap();
    let seventh = letter(7);
    let pending = tokio::spawn(async move {
        letters
            .park_behind(&seventh, &subject, stream)
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pending.is_finished(), "waits for the stream's lock");
    sqlx::query("UPDATE projector.dead_letters SET status = 'redriven' WHERE stream_id = $1")
        .bind(stream)
        .execute(&mut *redrive)
        .await
        .unwrap();
    redrive.commit().await.unwrap();
    assert_eq!(pending.await.unwrap(), None);
    assert_eq!(dead_letter::list(h.pool(), true).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dead_letters_command_lists_shows_and_redrives() {
    let h = Harness::new().await;
    let (p1, p2) = (Uuid::now_v7(), Uuid::now_v7());
    let good = [
        h.register(p1, "Lamp", 1000, 5).await,
        h.register(p2, "Bulb", 500, 1).await,
    ];
    let poison = h.append("inventory", p1, &[discontinued()]).await.remove(0);
    let corrupted = h.restock(p2, 2).await;
    h.publish(&good).await;
    h.publish(&[poison]).await;
    h.publish_corrupt(&corrupted, b"garbage").await;
    let consumer = h.consumer_with_attempts(&h.group(), 1);
    let stats = consumer.stats.clone();
    testkit::eventually("both parked", SETTLE, || {
        let stats = stats.clone();
        async move { (stats.parked() == 2).then_some(()) }
    })
    .await;
    consumer.stop().await;
    let letters = dead_letter::list(h.pool(), false).await.unwrap();
    let id_of = |stream: Uuid| {
        letters
            .iter()
            .find(|l| l.stream_id == Some(stream))
            .unwrap()
            .id
    };
    let (poisoned, corrupt) = (id_of(p1), id_of(p2));
    let url = &h.db.url;

    let list = common::run_projector(&["dead-letters", "list"], url).await;
    let stdout = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{stdout}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.contains(&format!("#{poisoned} ")), "{stdout}");
    assert!(stdout.contains("ProductDiscontinued"), "{stdout}");
    assert!(stdout.contains(&format!("stream {p2} v2")), "{stdout}");
    assert!(
        stdout.contains("undecodable: not an event envelope"),
        "{stdout}"
    );

    let show = common::run_projector(&["dead-letters", "show", &corrupt.to_string()], url).await;
    assert!(show.status.success());
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["payload"], "garbage");
    assert_eq!(shown["stream_id"], p2.to_string());
    assert_eq!(shown["status"], "parked");
    let missing = common::run_projector(&["dead-letters", "show", "999999"], url).await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no dead letter #999999"));

    // The corrupt message's event applies from the log; the poison fails again.
    let redrive = common::run_projector(&["dead-letters", "redrive", "--all"], url).await;
    let stdout = String::from_utf8_lossy(&redrive.stdout);
    assert!(!redrive.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("#{corrupt}: re-driven (Applied)")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "#{poisoned}: failed again, still parked: cannot project event"
        )),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&redrive.stderr).contains("some dead letters failed again"));
    assert_eq!(stock(h.pool(), p2).await, Some((3, 2)));

    let all = common::run_projector(&["dead-letters", "list", "--all"], url).await;
    let stdout = String::from_utf8_lossy(&all.stdout);
    assert!(
        stdout.contains(&format!("#{corrupt:<5} redriven")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("#{poisoned:<5} parked")),
        "{stdout}"
    );
    assert!(stdout.contains("tried 2x"), "{stdout}");
    let again =
        common::run_projector(&["dead-letters", "redrive", &corrupt.to_string()], url).await;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("does not exist or is not parked"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let usage = common::run_projector(&["dead-letters", "redrive"], url).await;
    assert!(!usage.status.success());
}

fn assert_letter_of(letter: &DeadLetter, event: &EventEnvelope, topic: &str, at: (i32, i64)) {
    assert_eq!(letter.status, "parked");
    assert_eq!(letter.topic, topic);
    assert_eq!((letter.partition, letter.offset), at);
    assert_eq!(letter.message_key, Some(event.stream_id.to_string()));
    assert_eq!(letter.event_id, Some(event.event_id));
    assert_eq!(letter.stream_id, Some(event.stream_id));
    assert_eq!(letter.stream_type.as_deref(), Some("inventory"));
    assert_eq!(letter.stream_version, Some(event.stream_version));
    assert_eq!(letter.global_position, Some(event.global_position));
    assert!(letter.redriven_at.is_none());
}

fn dlq_probe(config: &KafkaConfig, topic: &str) -> KafkaProbe {
    KafkaProbe::new(config, &[KafkaConfig::dead_letter_topic(topic)])
}

fn discontinued() -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "ProductDiscontinued".to_owned(),
        schema_version: 1,
        payload: json!({}),
    }
}

/// A product's (available, version).
async fn stock(pool: &PgPool, product: Uuid) -> Option<(i64, i64)> {
    sqlx::query_as("SELECT available, version FROM read.products WHERE product_id = $1")
        .bind(product)
        .fetch_optional(pool)
        .await
        .unwrap()
}
