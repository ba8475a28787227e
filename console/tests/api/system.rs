//! `GET /system` and `GET /system.json`: projection lag and outbox backlog.

use crate::helpers::{between, Console};

#[tokio::test]
async fn projection_lag_and_the_outbox_backlog_are_measured_from_the_database() {
    let console = Console::start().await;
    let empty = console.json("/system.json").await;
    assert_eq!(empty["log_head"], 0);
    assert_eq!(empty["outbox"]["rows"], 0);
    assert!(empty["outbox"]["oldest_age_seconds"].is_null());

    let mug = console.product("Mug", 1250, 10).await;
    console.order("alice", &[(mug, 1, 1250)], "tok_ok").await;
    console.order("bob", &[(mug, 1, 1250)], "tok_ok").await;
    // Nothing projected yet: every projection lacks its streams' events.
    let behind = console.json("/system.json").await;
    assert_eq!(behind["log_head"], 3);
    assert_eq!(behind["outbox"]["rows"], 3, "no relay runs: all three wait");
    assert!(behind["outbox"]["oldest_age_seconds"].as_f64().unwrap() >= 0.0);
    let lag = |figures: &serde_json::Value, name: &str| {
        figures["projections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["projection"] == name)
            .unwrap_or_else(|| panic!("{name} in {figures}"))
            .clone()
    };
    let products = lag(&behind, "products");
    assert_eq!(products["events_behind"], 1);
    assert_eq!(products["oldest_missing_position"], 1);
    assert_eq!(products["applied_through"], 0);
    let orders = lag(&behind, "orders");
    assert_eq!(orders["events_behind"], 2);
    assert_eq!(orders["oldest_missing_position"], 2);
    assert_eq!(orders["applied_through"], 1);
    assert_eq!(lag(&behind, "user_orders")["events_behind"], 2);
    assert_eq!(lag(&behind, "payments")["events_behind"], 0);
    assert_eq!(lag(&behind, "payments")["applied_through"], 3);

    // The page shows the same figures, set up to refresh itself.
    let page = console.get("/system").await;
    assert_eq!(page.status, 200);
    assert_eq!(between(&page.body, r#"id="outbox-rows">"#, "<"), "3");
    assert_eq!(between(&page.body, r#"id="log-head">"#, "<"), "3");
    let row = between(&page.body, r#"<tr data-projection="orders">"#, "</tr>");
    assert!(
        row.contains(r#"data-field="projections.1.events_behind">2<"#),
        "{row}"
    );
    assert!(page.body.contains(r#"data-src="/system.json""#));

    // Once projected, nothing is behind.
    console.project().await;
    let caught_up = console.json("/system.json").await;
    for projection in caught_up["projections"].as_array().unwrap() {
        assert_eq!(projection["events_behind"], 0, "{projection}");
        assert_eq!(projection["applied_through"], 3, "{projection}");
        assert!(projection["oldest_missing_age_seconds"].is_null());
    }
}

#[tokio::test]
async fn the_console_has_health_probes_metrics_and_its_assets() {
    let console = Console::start().await;
    assert_eq!(console.get("/health/live").await.status, 200);
    assert_eq!(console.get("/health/ready").await.status, 200);
    console.get("/").await;
    let metrics = console.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("http_requests_total"),
        "{}",
        metrics.body
    );
    let css = console
        .http
        .get(format!("{}/assets/console.css", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    let js = console.get("/assets/console.js").await;
    assert!(js.body.contains("data-field"));
    let page = console.get("/").await;
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "no external resources"
    );
}
