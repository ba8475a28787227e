//! The auditor against a real system state (see `common`): clean, it finds
//! nothing; each check finds its violation when the state is broken on
//! purpose.

mod common;

use std::process::Command;

use audit::Check;
use common::{publish, Copy};
use domain::order::{OrderEvent, OrderLine};
use domain::payment::payment_id_for;
use domain::product::ProductEvent;
use eventstore::NewEvent;
use testkit::TestKafka;
use uuid::Uuid;

#[tokio::test]
async fn a_clean_system_has_no_violations() {
    let copy = Copy::new().await;
    let report = copy.audit().await;
    assert!(report.is_clean(), "{report}");
    let line = |check, prefix: &str| report.line_of(check, prefix).unwrap().to_owned();
    let kafka = line(Check::Kafka, "kafka:");
    assert!(kafka.contains("lost 0, reordered 0"), "{kafka}");
    let orders = line(Check::Orders, "orders:");
    assert!(
        orders.starts_with(
            "orders: 5 in the log, CONFIRMED 2, REJECTED 1, CANCELLED 2, non-terminal 0"
        ),
        "{orders}"
    );
    let stock = line(Check::Stock, "stock:");
    // Mug 10 + 5 and cup 2; alice's 2 mugs and bob's mug and cup sold.
    assert!(
        stock.contains("initial + restocks 17 = available 13 + reserved 0 + sold 4"),
        "{stock}"
    );
    let ledger = line(Check::Ledger, "ledger:");
    assert!(
        ledger.contains("captured once for their total 2/2"),
        "{ledger}"
    );
    let answers = line(Check::Idempotency, "idempotency:");
    assert!(
        answers.starts_with("idempotency: 10 keys, 12 answers (2 replays)"),
        "{answers}"
    );
    assert!(
        answers.contains("10 records in command.idempotency_keys compared, differing 0"),
        "{answers}"
    );
    for table in ["products", "orders", "user_orders", "payments"] {
        let read = line(Check::ReadModels, &format!("read.{table}:"));
        assert!(read.contains("missing 0, extra 0, different 0"), "{read}");
    }
}

#[tokio::test]
async fn an_event_logged_but_never_published_is_lost() {
    let copy = Copy::new().await;
    let restock = NewEvent::from_domain(&ProductEvent::ProductRestocked { quantity: 3 });
    let appended = copy
        .append_unpublished("inventory", copy.base.mug, &[restock])
        .await;
    let report = copy.audit().await;
    let lost = report.of(Check::Kafka, "lost");
    assert_eq!(lost.len(), 1, "{report}");
    assert!(lost[0].detail.contains(&appended[0].event_id.to_string()));
    let kafka = report.line_of(Check::Kafka, "kafka:").unwrap();
    assert!(kafka.contains("lost 1, reordered 0"), "{kafka}");
    // The projector never saw it either: the product's row is a version behind.
    let products = report.line_of(Check::ReadModels, "read.products:").unwrap();
    assert!(
        products.contains("different 1 (stale version 1)"),
        "{products}"
    );
}

#[tokio::test]
async fn versions_published_out_of_order_are_reordered_and_duplicates_only_counted() {
    let copy = Copy::new().await;
    let kafka = TestKafka::create().await;
    let mut envelopes = copy.envelopes().await;
    let order = copy.base.confirmed[0];
    let first = envelopes.iter().position(|e| e.stream_id == order).unwrap();
    let second = envelopes
        .iter()
        .position(|e| e.stream_id == order && e.stream_version == 2)
        .unwrap();
    // v2 of alice's order goes out before v1; the mug's registration twice.
    envelopes.swap(first, second);
    let mug = envelopes
        .iter()
        .find(|e| e.stream_id == copy.base.mug)
        .unwrap()
        .clone();
    envelopes.push(mug);
    publish(&kafka.config, &envelopes).await;

    let report = copy.run(&copy.config(&kafka.config)).await;
    let reordered = report.of(Check::Kafka, "reordered");
    assert_eq!(reordered.len(), 1, "{report}");
    assert!(reordered[0].detail.contains(&order.to_string()));
    let line = report.line_of(Check::Kafka, "kafka:").unwrap();
    assert!(
        line.contains("lost 0, reordered 1, duplicates 1, phantoms 0"),
        "{line}"
    );
    assert_eq!(report.violations().len(), 1, "{report}");
}

#[tokio::test]
async fn a_message_that_is_not_a_logged_event_is_a_phantom() {
    let copy = Copy::new().await;
    let kafka = TestKafka::create().await;
    let mut envelopes = copy.envelopes().await;
    let mut phantom = envelopes[0].clone();
    phantom.event_id = Uuid::now_v7();
    let mut altered = envelopes[1].clone();
    altered.payload = serde_json::json!({"quantity": 99});
    envelopes.extend([phantom.clone(), altered]);
    publish(&kafka.config, &envelopes).await;

    let report = copy.run(&copy.config(&kafka.config)).await;
    let phantoms = report.of(Check::Kafka, "phantom");
    assert_eq!(phantoms.len(), 1, "{report}");
    assert!(phantoms[0].detail.contains(&phantom.event_id.to_string()));
    assert_eq!(report.of(Check::Kafka, "mismatched").len(), 1, "{report}");
}

#[tokio::test]
async fn read_model_rows_changed_behind_the_projectors_back_are_found() {
    let copy = Copy::new().await;
    let [alice, bob] = copy.base.confirmed;
    copy.execute(&format!(
        "UPDATE read.orders SET status = 'PENDING' WHERE order_id = '{alice}'"
    ))
    .await;
    copy.execute(&format!(
        "DELETE FROM read.user_orders WHERE order_id = '{bob}'"
    ))
    .await;
    copy.execute(&format!(
        "UPDATE read.payments SET version = version - 1 WHERE order_id = '{alice}'"
    ))
    .await;
    copy.execute(&format!(
        "INSERT INTO read.products SELECT '{}', name, price_cents, available, reserved, sold, version, updated_at
         FROM read.products WHERE product_id = '{}'",
        Uuid::now_v7(),
        copy.base.cup
    ))
    .await;

    let report = copy.audit().await;
    let line = |table: &str| {
        report
            .line_of(Check::ReadModels, &format!("read.{table}:"))
            .unwrap()
            .to_owned()
    };
    assert!(line("orders").contains("missing 0, extra 0, different 1 (stale version 0)"));
    assert!(line("user_orders").contains("missing 1, extra 0, different 0"));
    assert!(line("payments").contains("missing 0, extra 0, different 1 (stale version 1)"));
    assert!(line("products").contains("missing 0, extra 1, different 0"));
    let different = report.of(Check::ReadModels, "different");
    assert!(
        different
            .iter()
            .any(|v| v.detail.contains("status PENDING (log says CONFIRMED)")),
        "{report}"
    );
    assert_eq!(report.of(Check::ReadModels, "missing").len(), 1);
    assert_eq!(report.of(Check::ReadModels, "extra").len(), 1);
}

#[tokio::test]
async fn stock_in_the_read_model_that_does_not_add_up_is_found() {
    let copy = Copy::new().await;
    let mug = copy.base.mug;
    copy.execute(&format!(
        "UPDATE read.products SET sold = sold + 1 WHERE product_id = '{mug}'"
    ))
    .await;
    let report = copy.audit().await;
    let unbalanced = report.of(Check::Stock, "unbalanced");
    assert_eq!(unbalanced.len(), 1, "{report}");
    assert!(
        unbalanced[0]
            .detail
            .contains(&format!("product {mug} in read.products")),
        "{report}"
    );
}

#[tokio::test]
async fn stock_reserved_beyond_what_is_there_goes_negative_in_the_log_fold() {
    let copy = Copy::new().await;
    let cup = copy.base.cup;
    // Written around the domain's decide (which refuses it): 1 cup left, 5 taken.
    let overdraw = ProductEvent::StockReserved {
        order_id: copy.base.rejected,
        quantity: 5,
    };
    copy.append_unpublished("inventory", cup, &[NewEvent::from_domain(&overdraw)])
        .await;
    let report = copy.audit().await;
    let negative = report.of(Check::Stock, "negative");
    assert_eq!(negative.len(), 1, "{report}");
    assert!(
        negative[0]
            .detail
            .contains("available -4, reserved 5, sold 1"),
        "{}",
        negative[0].detail
    );
    // And the rejected order now holds stock it will never release.
    assert_eq!(report.of(Check::Stock, "held-for-finished-order").len(), 1);
}

#[tokio::test]
async fn an_order_left_non_terminal_is_found() {
    let copy = Copy::new().await;
    let order = Uuid::now_v7();
    let placed = OrderEvent::OrderPlaced {
        user_id: "grace".into(),
        lines: vec![OrderLine {
            product_id: copy.base.mug,
            quantity: 1,
            unit_price_cents: 1250,
        }],
        total_cents: 1250,
        payment_token: "tok_ok".into(),
        placed_at: chrono::Utc::now(),
    };
    copy.append_unpublished("orders", order, &[NewEvent::from_domain(&placed)])
        .await;
    let report = copy.audit().await;
    let open = report.of(Check::Orders, "non-terminal");
    assert_eq!(open.len(), 1, "{report}");
    assert!(open[0]
        .detail
        .contains(&format!("order {order} is PENDING")));
    let line = report.line_of(Check::Orders, "orders:").unwrap();
    assert!(
        line.contains("non-terminal 1 (PENDING 1, AWAITING_PAYMENT 0)"),
        "{line}"
    );
}

/// Records a captured charge of `amount` for `order` under `key`.
async fn capture(copy: &Copy, order: Uuid, key: &str, amount: i64) -> String {
    let charge_id = format!("ch_{}", Uuid::new_v4().simple());
    sqlx::query(
        "INSERT INTO gateway.charges (charge_id, idempotency_key, request_hash, reference,
             amount_cents, currency, token, status)
         VALUES ($1, $2, 'test', $3, $4, 'EUR', 'tok_ok', 'captured')",
    )
    .bind(&charge_id)
    .bind(key)
    .bind(order)
    .bind(amount)
    .execute(&copy.pool)
    .await
    .unwrap();
    charge_id
}

#[tokio::test]
async fn a_second_capture_of_a_confirmed_order_is_a_double_charge() {
    let copy = Copy::new().await;
    let alice = copy.base.confirmed[0];
    let second = capture(&copy, alice, "someone-else", 2500).await;
    let report = copy.audit().await;
    let doubles = report.of(Check::Ledger, "double-charge");
    assert_eq!(doubles.len(), 1, "{report}");
    assert!(doubles[0].detail.contains(&second), "{}", doubles[0].detail);
    assert_eq!(report.of(Check::Ledger, "foreign-key").len(), 1, "{report}");
}

#[tokio::test]
async fn a_cancelled_order_with_a_capture_must_have_it_refunded() {
    let copy = Copy::new().await;
    // Erin's payment hung: the gateway recorded nothing for it.
    let erin = copy.base.cancelled;
    let key = payment_id_for(erin).to_string();
    let charge = capture(&copy, erin, &key, 1250).await;
    let report = copy.audit().await;
    let unrefunded = report.of(Check::Ledger, "unrefunded");
    assert_eq!(unrefunded.len(), 1, "{report}");
    assert!(unrefunded[0].detail.contains(&charge));
    assert_eq!(report.violations().len(), 1, "{report}");

    copy.execute(&format!(
        "UPDATE gateway.charges SET status = 'refunded', refunded_at = now(), refund_id = 're_x'
         WHERE charge_id = '{charge}'"
    ))
    .await;
    let report = copy.audit().await;
    assert!(report.is_clean(), "{report}");
}

#[tokio::test]
async fn a_key_answered_two_ways_or_unlike_its_record_is_found() {
    let copy = Copy::new().await;
    let mut answers = std::fs::read_to_string(&copy.base.answers).unwrap();
    let other = serde_json::json!({"key": "order-1", "method": "POST", "path": "/orders", "status": 201,
        "body": {"order_id": Uuid::now_v7(), "version": 1, "position": 1, "status": "PENDING"}});
    let outage = serde_json::json!({"key": "order-3", "method": "POST", "path": "/orders", "status": 503,
        "body": {"title": "Service unavailable"}});
    answers.push_str(&format!("{outage}\n{other}\n"));
    let path = std::env::temp_dir().join(format!("audit-answers-{}.jsonl", Uuid::new_v4()));
    std::fs::write(&path, answers).unwrap();
    copy.execute(
        "UPDATE command.idempotency_keys SET response_body = response_body || '{\"version\": 7}'
         WHERE idempotency_key = 'order-2'",
    )
    .await;

    let mut config = copy.config(&copy.base.kafka);
    config.answers = Some(path);
    let report = copy.run(&config).await;
    let two_ways = report.of(Check::Idempotency, "answered-two-ways");
    assert_eq!(two_ways.len(), 1, "{report}");
    assert!(two_ways[0].detail.contains("\"order-1\""));
    let differs = report.of(Check::Idempotency, "record-differs");
    assert_eq!(differs.len(), 1, "{report}");
    assert!(differs[0].detail.contains("\"order-2\""));
    // order-1's record, answered first, still agrees with its first answer;
    // the 503 is not an answer.
    assert_eq!(report.violations().len(), 2, "{report}");
    let line = report.line_of(Check::Idempotency, "idempotency:").unwrap();
    assert!(line.contains("1 skipped (5xx, 409)"), "{line}");
}

#[tokio::test]
async fn the_binary_exits_0_when_clean_and_1_on_a_violation() {
    let copy = Copy::new().await;
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_audit"))
            .env("DATABASE_URL", &copy.url)
            .env("KAFKA_BROKERS", &copy.base.kafka.brokers)
            .env("KAFKA_TOPIC_PREFIX", &copy.base.kafka.topic_prefix)
            .arg("--answers")
            .arg(&copy.base.answers)
            .output()
            .expect("run audit")
    };
    let clean = run();
    let stdout = String::from_utf8_lossy(&clean.stdout);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert!(stdout.contains("audit: no violations"), "{stdout}");

    copy.execute(&format!(
        "UPDATE read.products SET available = available + 1 WHERE product_id = '{}'",
        copy.base.cup
    ))
    .await;
    let broken = run();
    let stdout = String::from_utf8_lossy(&broken.stdout);
    assert_eq!(broken.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("read-models different: read.products"),
        "{stdout}"
    );
}
