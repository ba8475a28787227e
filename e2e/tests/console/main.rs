//! The web console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, see `infra/chromium.sh`) against the real binaries:
//! an order placed through the command API shows up in the orders page and
//! on its timeline with every event in log order, `/system` shows live
//! figures that its script refreshes, and a dead letter parked by the saga
//! worker is re-driven by clicking, with the admin token.
//!
//! Screenshots go to the test's temporary directory always, and to
//! `docs/console/` with `CONSOLE_SCREENSHOTS=1`.

mod webdriver;

use std::path::PathBuf;
use std::time::Duration;

use domain::order::{OrderEvent, OrderLine};
use e2e::processes::{Processes, CONSOLE_ADMIN_TOKEN};
use eventstore::{EventEnvelope, ExpectedVersion, Metadata, NewEvent};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use testkit::{TestDatabase, TestKafka};
use uuid::Uuid;
use webdriver::Browser;

const WAIT: Duration = Duration::from_secs(40);

/// Where screenshots go: the temporary directory, and `docs/console/`
/// when asked.
struct Screenshots {
    dirs: Vec<PathBuf>,
}

impl Screenshots {
    fn new(temp: &std::path::Path) -> Self {
        let mut dirs = vec![temp.join("screenshots")];
        if std::env::var("CONSOLE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console"));
        }
        Self { dirs }
    }

    async fn take(&self, browser: &Browser, name: &str) {
        let paths: Vec<PathBuf> = self
            .dirs
            .iter()
            .map(|d| d.join(format!("{name}.png")))
            .collect();
        browser.screenshot(&paths).await;
        eprintln!("screenshot {}", paths[0].display());
    }
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let response = http.post(url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn order_status(
    http: &reqwest::Client,
    processes: &Processes,
    order: &str,
) -> Option<String> {
    let url = format!("{}/orders/{order}", processes.query_api.url());
    let body: Value = http.get(url).send().await.ok()?.json().await.ok()?;
    body["status"].as_str().map(str::to_owned)
}

async fn wait_for_status(http: &reqwest::Client, processes: &Processes, order: &str, want: &str) {
    testkit::eventually(&format!("order {order} is {want}"), WAIT, || async {
        (order_status(http, processes, order).await.as_deref() == Some(want)).then_some(())
    })
    .await;
}

/// Waits until the element `selector` has a text for which `done` holds.
async fn wait_for_text(browser: &Browser, selector: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let texts = browser.texts(selector).await;
        if let Some(text) = texts.into_iter().find(|t| done(t)) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{selector} never had the expected text"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Parks an `OrderPlaced` for an order that is not in the log yet (the
/// saga cannot move it on), then places that order for real, whose event
/// waits behind it: two parked letters that re-drive cleanly, in order.
async fn park_two_letters(db: &TestDatabase, kafka: &TestKafka, product: Uuid) -> Uuid {
    let order_id = Uuid::now_v7();
    let placed = OrderEvent::OrderPlaced {
        user_id: "carol".into(),
        lines: vec![OrderLine {
            product_id: product,
            quantity: 1,
            unit_price_cents: 1250,
        }],
        total_cents: 1250,
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
    let producer: FutureProducer = kafka.config.client_config().create().unwrap();
    producer
        .send(
            FutureRecord::to(&kafka.config.topic_for("orders"))
                .key(&order_id.to_string())
                .payload(&serde_json::to_vec(&poison).unwrap()),
            Duration::from_secs(5),
        )
        .await
        .expect("publish");
    let letters = || async { saga::dead_letter::list(&db.pool, false).await.unwrap() };
    testkit::eventually("the poison event is parked", WAIT, || async {
        (!letters().await.is_empty()).then_some(())
    })
    .await;
    let mut tx = db.pool.begin().await.unwrap();
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
    testkit::eventually("the real event is parked behind it", WAIT, || async {
        (letters().await.len() == 2).then_some(())
    })
    .await;
    order_id
}

#[tokio::test]
async fn the_console_renders_orders_timelines_live_figures_and_redrives_dead_letters_in_a_browser()
{
    let temp = std::env::temp_dir().join(format!("console-browser-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&temp).unwrap();
    eprintln!("browser test files in {}", temp.display());
    let screenshots = Screenshots::new(&temp);
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    kafka.config.ensure_topics().await.unwrap();
    let http = reqwest::Client::new();
    let processes = Processes::start(&db, &kafka, &http).await;
    let console = processes.console.url();

    let product = post(
        &http,
        format!("{}/products", processes.command_api.url()),
        json!({"name": "Mug", "price_cents": 1250, "initial_stock": 10}),
    )
    .await;
    let product_id: Uuid = product["product_id"].as_str().unwrap().parse().unwrap();
    let order = post(
        &http,
        format!("{}/orders", processes.command_api.url()),
        json!({"user_id": "alice", "lines": [{"product_id": product_id, "quantity": 2}],
               "payment": {"token": "tok_ok"}}),
    )
    .await;
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    wait_for_status(&http, &processes, &order_id, "CONFIRMED").await;
    let declined = post(
        &http,
        format!("{}/orders", processes.command_api.url()),
        json!({"user_id": "bob", "lines": [{"product_id": product_id, "quantity": 1}],
               "payment": {"token": "tok_decline_insufficient_funds"}}),
    )
    .await;
    let declined_id = declined["order_id"].as_str().unwrap().to_owned();
    wait_for_status(&http, &processes, &declined_id, "CANCELLED").await;
    let parked_order = park_two_letters(&db, &kafka, product_id).await;

    let browser = Browser::start(&temp).await;

    // The orders page lists it with its status; the search finds it.
    browser.open(&format!("{console}/")).await;
    assert_eq!(browser.title().await, "Orders · orders console");
    let row = browser
        .texts("#orders tbody tr")
        .await
        .into_iter()
        .find(|row| row.contains(&order_id))
        .expect("the order is listed");
    assert!(
        row.contains("alice") && row.contains("CONFIRMED") && row.contains("25.00"),
        "{row}"
    );
    let row = browser
        .texts("#orders tbody tr")
        .await
        .into_iter()
        .find(|row| row.contains(&declined_id))
        .expect("the declined order is listed");
    assert!(
        row.contains("CANCELLED") && row.contains("DECLINED"),
        "{row}"
    );
    screenshots.take(&browser, "orders").await;
    browser.find("#user_id").await.type_text("alice").await;
    browser.find("form.search button").await.click().await;
    browser.wait_for("#user_id[value='alice']").await;
    assert!(browser.url().await.contains("user_id=alice"));
    let rows = browser.texts("#orders tbody tr").await;
    assert_eq!(rows.len(), 1, "only alice's order: {rows:?}");
    assert!(rows[0].contains(&order_id));

    // Its timeline: every event it set off, in log order, with the status.
    browser
        .find(&format!("#orders a[href='/orders/{order_id}']"))
        .await
        .click()
        .await;
    assert_eq!(
        browser.wait_for("#order-status").await.text().await,
        "CONFIRMED"
    );
    let expected: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM eventstore.events
         WHERE metadata->>'correlation_id' =
               (SELECT metadata->>'correlation_id' FROM eventstore.events
                WHERE stream_id = $1::uuid AND stream_version = 1)
         ORDER BY global_position",
    )
    .bind(&order_id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let shown = browser.texts("#timeline td.event-type").await;
    assert_eq!(shown, expected);
    let mut rest = shown.iter();
    for step in [
        "OrderPlaced",
        "StockReserved",
        "OrderAwaitingPayment",
        "PaymentRequested",
        "PaymentCaptured",
    ] {
        assert!(rest.any(|t| t == step), "{step} in order in {shown:?}");
    }
    // After the capture, in either order (one saga reaction appends both).
    let after: Vec<&String> = rest.collect();
    for step in ["ReservationCommitted", "OrderConfirmed"] {
        assert!(
            after.iter().any(|t| *t == step),
            "{step} after the capture in {shown:?}"
        );
    }
    assert_eq!(browser.text("#payment-status").await, "CAPTURED");
    assert_eq!(browser.text("#saga-phase").await, "CONFIRMED");
    screenshots.take(&browser, "order").await;

    // /system: the figures, kept live by the script.
    browser.open(&format!("{console}/system")).await;
    assert_eq!(browser.all("#projections tbody tr").await.len(), 4);
    let first = browser.text("[data-field='at']").await;
    wait_for_text(&browser, "[data-field='at']", |t| t != first).await;
    wait_for_text(&browser, "#outbox-rows", |t| t == "0").await;
    wait_for_text(
        &browser,
        "[data-field='projections.1.events_behind']",
        |t| t == "0",
    )
    .await;
    assert_eq!(browser.text("#live-state").await, "live");
    screenshots.take(&browser, "system").await;

    // Dead letters: both parked; re-drive them oldest first by clicking.
    browser.open(&format!("{console}/dead-letters")).await;
    let rows = browser.texts("#letters-saga tbody tr").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[1].contains("blocked by dead letter"), "{}", rows[1]);
    screenshots.take(&browser, "dead-letters").await;
    // The oldest from its own page, with the token.
    let oldest = saga::dead_letter::list(&db.pool, false).await.unwrap()[0].id;
    browser
        .find(&format!("a[href='/dead-letters/saga/{oldest}']"))
        .await
        .click()
        .await;
    assert!(browser
        .wait_for("#letter-payload")
        .await
        .text()
        .await
        .contains("OrderPlaced"));
    assert_eq!(browser.text("#letter-status").await, "parked");
    browser
        .find("#token")
        .await
        .type_text(CONSOLE_ADMIN_TOKEN)
        .await;
    browser.find("#redrive").await.click().await;
    let result = browser.wait_for("#redrive-result").await.text().await;
    assert!(
        result.starts_with("Re-driven: applied to order"),
        "#{oldest}: {result}"
    );
    assert_eq!(browser.text("#letter-status").await, "redriven");
    screenshots.take(&browser, "dead-letter").await;
    // The rest with "re-drive all", again while the worker parks what it
    // gets for the order meanwhile (it keeps an order's events in order).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let parked = saga::dead_letter::list(&db.pool, false).await.unwrap();
        let status = order_status(&http, &processes, &parked_order.to_string()).await;
        if parked.is_empty() && status.as_deref() == Some("CONFIRMED") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{parked:?} {status:?}"
        );
        if parked.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        browser.open(&format!("{console}/dead-letters")).await;
        browser
            .find("#redrive-all-saga input[name='token']")
            .await
            .type_text(CONSOLE_ADMIN_TOKEN)
            .await;
        browser.find("#redrive-all-saga button").await.click().await;
        browser.wait_for("#redrive-results").await;
        let results = browser.texts("#redrive-results li").await;
        assert!(!results.is_empty(), "the re-drive says what it did");
        assert!(
            results.iter().all(|r| r.contains("re-driven")),
            "{results:?}"
        );
    }
    // The running worker takes the payment the re-drive set up.
    wait_for_status(&http, &processes, &parked_order.to_string(), "CONFIRMED").await;
    browser.open(&format!("{console}/dead-letters")).await;
    assert!(browser.all("#letters-saga tbody tr").await.is_empty());
}
