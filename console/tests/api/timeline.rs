//! `GET /orders/{id}`: the order's timeline, payment and saga.

use uuid::Uuid;

use crate::helpers::{between, Console};

#[tokio::test]
async fn the_timeline_shows_every_event_the_order_caused_in_log_order_with_causation() {
    let console = Console::start().await;
    let mug = console.product("Mug", 1250, 10).await;
    let plate = console.product("Plate", 800, 10).await;
    let order = console
        .order("alice", &[(mug, 2, 1250), (plate, 1, 800)], "tok_ok")
        .await;
    let other = console.order("bob", &[(mug, 1, 1250)], "tok_ok").await;
    console.run_saga().await;
    console.project().await;

    let page = console.get(&format!("/orders/{order}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        between(&page.body, r#"id="order-status">"#, "<"),
        "AWAITING_PAYMENT"
    );
    assert!(between(&page.body, r#"id="order-user">"#, "</dd>").contains("alice"));

    // Every event of the order's correlation, from the log, in order.
    let expected: Vec<(i64, String, Uuid)> = sqlx::query_as(
        "SELECT global_position, event_type, stream_id FROM eventstore.events
         WHERE metadata->>'correlation_id' =
               (SELECT metadata->>'correlation_id' FROM eventstore.events WHERE stream_id = $1 LIMIT 1)
         ORDER BY global_position",
    )
    .bind(order)
    .fetch_all(&console.db.pool)
    .await
    .unwrap();
    let types: Vec<&str> = expected.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "OrderPlaced",
            "StockReserved",
            "StockReserved",
            "OrderAwaitingPayment",
            "PaymentRequested"
        ],
        "the saga's real reactions"
    );
    let table = between(&page.body, r#"<table id="timeline">"#, "</table>");
    let rows: Vec<&str> = table.split(r#"<tr id="event-"#).skip(1).collect();
    assert_eq!(rows.len(), expected.len(), "{table}");
    for (row, (position, event_type, stream)) in rows.iter().zip(&expected) {
        assert!(row.starts_with(&format!("{position}\"")), "{row}");
        assert!(
            row.contains(&format!(r#"<td class="event-type">{event_type}</td>"#)),
            "{row}"
        );
        if *stream != order {
            assert!(row.contains(&stream.to_string()), "stream id shown: {row}");
        }
    }
    // Causation: the placement came from the command, the reservations from
    // the placement.
    assert!(rows[0].contains("command "), "{}", rows[0]);
    let placed = expected[0].0;
    assert!(
        rows[1].contains(&format!(
            r##"href="#event-{placed}">#{placed} OrderPlaced"##
        )),
        "{}",
        rows[1]
    );
    // Bob's order is not on alice's timeline.
    assert!(!table.contains(&other.to_string()));
    let bob_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM eventstore.events WHERE stream_id = $1 OR payload->>'order_id' = $1::text",
    )
    .bind(other)
    .fetch_one(&console.db.pool)
    .await
    .unwrap();
    assert!(bob_events > 1);

    // The payment and the saga.
    assert_eq!(
        between(&page.body, r#"id="payment-status">"#, "<"),
        "REQUESTED"
    );
    assert!(
        between(&page.body, r#"<ol id="payment-attempts">"#, "</ol>").contains("PaymentRequested")
    );
    assert_eq!(
        between(&page.body, r#"id="saga-phase">"#, "<"),
        "AWAITING_PAYMENT"
    );
    let next_action = between(&page.body, r#"id="saga-next-action">"#, "<");
    assert!(
        next_action.ends_with("UTC"),
        "a pending charge is due: {next_action}"
    );
}

#[tokio::test]
async fn an_order_in_the_log_but_not_yet_projected_still_has_its_timeline() {
    let console = Console::start().await;
    let mug = console.product("Mug", 1250, 10).await;
    let order = console.order("alice", &[(mug, 1, 1250)], "tok_ok").await;
    let page = console.get(&format!("/orders/{order}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"id="not-projected""#));
    assert!(page.body.contains("OrderPlaced"));
    assert!(page.body.contains("The saga has not seen this order"));
}

#[tokio::test]
async fn an_unknown_order_is_404_and_a_malformed_id_400() {
    let console = Console::start().await;
    let unknown = console.get(&format!("/orders/{}", Uuid::now_v7())).await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("no order"), "{}", unknown.body);
    assert!(unknown.body.starts_with("<!doctype html>"), "an HTML page");
    let malformed = console.get("/orders/not-a-uuid").await;
    assert_eq!(malformed.status, 400);
    assert!(
        malformed.body.contains("is not a valid order id"),
        "{}",
        malformed.body
    );
}
