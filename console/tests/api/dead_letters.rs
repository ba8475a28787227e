//! `/dead-letters`: listing, showing, and re-driving behind the admin token.

use saga::dead_letter::{DeadLetters, Letter};
use testkit::TestKafka;
use uuid::Uuid;

use crate::helpers::{between, Console, TOKEN};

/// Parks the `OrderPlaced` of a fresh order (never handled by the saga) the
/// way the worker does; the dead letter's id and the order.
async fn park_an_order(console: &Console) -> (i64, Uuid) {
    let kafka = TestKafka::create().await;
    let mug = console.product("Mug", 500, 5).await;
    let order = console.order("alice", &[(mug, 1, 500)], "tok_ok").await;
    let placed = console
        .events_after(0)
        .await
        .into_iter()
        .find(|e| e.stream_id == order)
        .unwrap();
    let letter = Letter {
        topic: kafka.config.topic_for("orders"),
        partition: 0,
        offset: 7,
        key: Some(order.to_string()),
        payload: serde_json::to_string(&placed).unwrap(),
        headers: vec![("event_type".into(), "OrderPlaced".into())],
    };
    DeadLetters::new(console.db.pool.clone(), &kafka.config)
        .unwrap()
        .park(
            &letter,
            "database: <deadlock> detected",
            3,
            Some(placed.event_id),
            Some(order),
        )
        .await
        .unwrap();
    let id = saga::dead_letter::list(&console.db.pool, false)
        .await
        .unwrap()[0]
        .id;
    (id, order)
}

async fn status(console: &Console, id: i64) -> String {
    saga::dead_letter::show(&console.db.pool, id)
        .await
        .unwrap()
        .unwrap()
        .status
}

#[tokio::test]
async fn a_dead_letter_is_listed_and_shown_with_payload_headers_and_reason() {
    let console = Console::start_with(Some(TOKEN)).await;
    let (id, order) = park_an_order(&console).await;
    let list = console.get("/dead-letters").await;
    assert_eq!(list.status, 200);
    let row = between(&list.body, &format!(r#"<tr data-letter="{id}">"#), "</tr>");
    assert!(
        row.contains("parked") && row.contains("database: &lt;deadlock&gt; detected"),
        "{row}"
    );
    assert!(row.contains(&format!("/orders/{order}")));

    let show = console.get(&format!("/dead-letters/saga/{id}")).await;
    assert_eq!(show.status, 200);
    assert_eq!(
        between(&show.body, r#"id="letter-reason">"#, "<"),
        "database: &lt;deadlock&gt; detected"
    );
    assert!(between(&show.body, r#"id="letter-payload">"#, "</pre>").contains("OrderPlaced"));
    assert!(between(&show.body, r#"id="letter-headers">"#, "</pre>").contains("event_type"));
    assert!(show.body.contains(r#"id="redrive-form""#));

    // The order's timeline points at it.
    let timeline = console.get(&format!("/orders/{order}")).await;
    assert!(timeline
        .body
        .contains(&format!(r#"href="/dead-letters/saga/{id}""#)));

    assert_eq!(console.get("/dead-letters/saga/999999").await.status, 404);
    assert_eq!(console.get("/dead-letters/saga/abc").await.status, 400);
    assert_eq!(console.get("/dead-letters/elsewhere/1").await.status, 404);
}

#[tokio::test]
async fn without_a_configured_token_redrive_is_disabled() {
    let console = Console::start().await;
    let (id, _) = park_an_order(&console).await;
    let show = console.get(&format!("/dead-letters/saga/{id}")).await;
    assert!(show.body.contains(r#"id="redrive-disabled""#));
    assert!(!show.body.contains(r#"id="redrive-form""#));
    let refused = console
        .post_form(
            &format!("/dead-letters/saga/{id}/redrive"),
            Some("anything"),
            None,
        )
        .await;
    assert_eq!(refused.status, 403);
    assert!(
        refused.body.contains("re-drive is disabled"),
        "{}",
        refused.body
    );
    assert_eq!(status(&console, id).await, "parked");
}

#[tokio::test]
async fn redrive_needs_the_right_token_and_then_processes_the_letter() {
    let console = Console::start_with(Some(TOKEN)).await;
    let (id, order) = park_an_order(&console).await;
    let path = format!("/dead-letters/saga/{id}/redrive");

    let missing = console.post_form(&path, None, None).await;
    assert_eq!(missing.status, 401, "{}", missing.body);
    let empty = console.post_form(&path, Some(""), None).await;
    assert_eq!(empty.status, 401);
    let wrong = console.post_form(&path, Some("not-the-token"), None).await;
    assert_eq!(wrong.status, 403);
    assert!(wrong.body.contains("wrong admin token"));
    let wrong_bearer = console.post_form(&path, None, Some("nope")).await;
    assert_eq!(wrong_bearer.status, 403);
    assert_eq!(status(&console, id).await, "parked", "nothing happened yet");
    let saga_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM saga.order_sagas")
        .fetch_one(&console.db.pool)
        .await
        .unwrap();
    assert_eq!(saga_rows, 0);

    let done = console.post_form(&path, Some(TOKEN), None).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(between(&done.body, r#"id="redrive-result">"#, "<").starts_with("Re-driven"));
    assert_eq!(
        between(&done.body, r#"id="letter-status">"#, "<"),
        "redriven"
    );
    assert_eq!(status(&console, id).await, "redriven");
    // The saga handled it for real: it reserved the stock.
    let phase: String =
        sqlx::query_scalar("SELECT phase FROM saga.order_sagas WHERE order_id = $1")
            .bind(order)
            .fetch_one(&console.db.pool)
            .await
            .unwrap();
    assert_eq!(phase, "AWAITING_PAYMENT", "reserved, payment next");
    let reserved: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM eventstore.events WHERE event_type = 'StockReserved' AND payload->>'order_id' = $1::text",
    )
    .bind(order)
    .fetch_one(&console.db.pool)
    .await
    .unwrap();
    assert_eq!(reserved, 1);

    // Again: it is not parked any more.
    let again = console.post_form(&path, None, Some(TOKEN)).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("Not parked"));
    let list = console.get("/dead-letters").await;
    assert!(
        !list.body.contains(&format!(r#"data-letter="{id}""#)),
        "only parked ones by default"
    );
    let all = console.get("/dead-letters?all=true").await;
    assert!(all.body.contains(&format!(r#"data-letter="{id}""#)));
}

#[tokio::test]
async fn redrive_all_processes_every_parked_letter_oldest_first_behind_the_token() {
    let console = Console::start_with(Some(TOKEN)).await;
    let (first, _) = park_an_order(&console).await;
    let list = console.get("/dead-letters").await;
    assert!(list.body.contains(r#"id="redrive-all-saga""#));
    let refused = console
        .post_form("/dead-letters/saga/redrive", None, None)
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(status(&console, first).await, "parked");

    let done = console
        .post_form("/dead-letters/saga/redrive", None, Some(TOKEN))
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let results = between(&done.body, r#"id="redrive-results""#, "</section>");
    assert!(
        results.contains(&format!("#{first}: re-driven: applied to order")),
        "{results}"
    );
    assert_eq!(status(&console, first).await, "redriven");
    assert!(
        !done.body.contains(r#"id="redrive-all-saga""#),
        "nothing left to re-drive"
    );

    let nothing = console
        .post_form("/dead-letters/saga/redrive", Some(TOKEN), None)
        .await;
    assert_eq!(nothing.status, 200);
    assert!(nothing.body.contains("Nothing was parked."));
    assert_eq!(
        console
            .post_form("/dead-letters/elsewhere/redrive", Some(TOKEN), None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn a_projector_dead_letter_is_shown_and_redriven_into_the_read_models() {
    use projector::dead_letter::{DeadLetters as ProjectorLetters, Letter as Message, Subject};
    let console = Console::start_with(Some(TOKEN)).await;
    let kafka = TestKafka::create().await;
    let mug = console.product("Mug", 500, 5).await;
    console.project().await;
    let order = console.order("dora", &[(mug, 1, 500)], "tok_ok").await;
    let placed = console
        .events_after(0)
        .await
        .into_iter()
        .find(|e| e.stream_id == order)
        .unwrap();
    let message = Message {
        topic: kafka.config.topic_for("orders"),
        partition: 1,
        offset: 4,
        key: Some(order.to_string()),
        payload: "{corrupt".into(),
        headers: vec![("event_id".into(), placed.event_id.to_string())],
    };
    let subject = Subject {
        event_id: Some(placed.event_id),
        stream_id: Some(order),
        stream_type: Some("orders".into()),
        global_position: Some(placed.global_position),
        stream_version: Some(1),
    };
    let parked = ProjectorLetters::new(console.db.pool.clone(), &kafka.config)
        .unwrap()
        .park(&message, &subject, "undecodable envelope", 1)
        .await
        .unwrap();

    let list = console.get("/dead-letters").await;
    let table = between(&list.body, r#"<table id="letters-projector">"#, "</table>");
    assert!(table.contains("undecodable envelope"), "{table}");
    assert!(table.contains(&format!("/orders/{order}")));
    let figures = console.json("/system.json").await;
    assert_eq!(figures["parked_projector_letters"], 1);
    let timeline = console.get(&format!("/orders/{order}")).await;
    assert!(timeline
        .body
        .contains(&format!(r#"href="/dead-letters/projector/{}""#, parked.id)));

    let show = console
        .get(&format!("/dead-letters/projector/{}", parked.id))
        .await;
    assert_eq!(show.status, 200);
    assert_eq!(
        between(&show.body, r#"id="letter-payload">"#, "</pre>"),
        "{corrupt"
    );
    let path = format!("/dead-letters/projector/{}/redrive", parked.id);
    assert_eq!(
        console.post_form(&path, Some("wrong"), None).await.status,
        403
    );
    let done = console.post_form(&path, Some(TOKEN), None).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(
        between(&done.body, r#"id="redrive-result">"#, "<"),
        "Re-driven: applied to the read models"
    );
    // Applied from the log, through the projector's own path.
    let status: String = sqlx::query_scalar("SELECT status FROM read.orders WHERE order_id = $1")
        .bind(order)
        .fetch_one(&console.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "PENDING");
    assert_eq!(
        console.json("/system.json").await["parked_projector_letters"],
        0
    );
}
