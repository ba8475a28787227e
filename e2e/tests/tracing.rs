//! Exported traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, one order is one
//! trace across every process (the real binaries, exporting OTLP/HTTP
//! protobuf to a small receiver in the test); without it, nothing is sent.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use e2e::processes::Processes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::{json, Value};
use testkit::{TestDatabase, TestKafka};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(40);

/// One exported span, as the receiver decoded it (ids in lowercase hex).
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_span_id: String,
}

/// What the receiver got: every span, and how many export requests.
#[derive(Debug, Default)]
struct Received {
    spans: Vec<Exported>,
    requests: usize,
}

/// A small OTLP/HTTP receiver: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, as the OpenTelemetry Collector takes it.
struct Receiver {
    url: String,
    received: Arc<Mutex<Received>>,
}

impl Receiver {
    async fn start(listener: TcpListener) -> Self {
        let received = Arc::new(Mutex::new(Received::default()));
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(received.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, received }
    }

    fn requests(&self) -> usize {
        self.received.lock().unwrap().requests
    }

    /// The spans of trace `trace_id`, by span id.
    fn trace(&self, trace_id: &str) -> HashMap<String, Exported> {
        let received = self.received.lock().unwrap();
        received
            .spans
            .iter()
            .filter(|span| span.trace_id == trace_id)
            .map(|span| (span.span_id.clone(), span.clone()))
            .collect()
    }
}

async fn receive(State(received): State<Arc<Mutex<Received>>>, body: Bytes) -> impl IntoResponse {
    let mut received = received.lock().unwrap();
    received.requests += 1;
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
            .map(|value| match value {
                AnyValue::StringValue(name) => name.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            received.spans.push(Exported {
                service: service.clone(),
                name: span.name,
                trace_id: hex::encode(span.trace_id),
                span_id: hex::encode(span.span_id),
                parent_span_id: hex::encode(span.parent_span_id),
            });
        }
    }
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

/// Whether `span`'s chain of parents (within `trace`) reaches `ancestor`.
fn descends_from(trace: &HashMap<String, Exported>, span: &Exported, ancestor: &str) -> bool {
    let mut current = span;
    for _ in 0..64 {
        if current.parent_span_id == ancestor {
            return true;
        }
        match trace.get(&current.parent_span_id) {
            Some(parent) => current = parent,
            None => return false,
        }
    }
    false
}

fn describe(trace: &HashMap<String, Exported>) -> String {
    let mut lines: Vec<String> = trace
        .values()
        .map(|s| {
            format!(
                "{} {} {} <- {}",
                s.service, s.name, s.span_id, s.parent_span_id
            )
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

async fn post_json(
    http: &reqwest::Client,
    url: String,
    body: Value,
    traceparent: Option<&str>,
) -> Value {
    let mut request = http.post(url).json(&body);
    if let Some(value) = traceparent {
        request = request.header("traceparent", value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// Registers a product and places one order for it (with `traceparent`,
/// if given), and waits until the saga has confirmed it. Returns its id.
async fn place_confirmed_order(
    http: &reqwest::Client,
    processes: &Processes,
    traceparent: Option<&str>,
) -> String {
    let product = post_json(
        http,
        format!("{}/products", processes.command_api.url()),
        json!({"name": "Mug", "price_cents": 500, "initial_stock": 3}),
        None,
    )
    .await;
    let order = post_json(
        http,
        format!("{}/orders", processes.command_api.url()),
        json!({"user_id": "alice", "lines": [{"product_id": product["product_id"], "quantity": 1}],
               "payment": {"token": "tok_ok"}}),
        traceparent,
    )
    .await;
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    let order_url = format!("{}/orders/{order_id}", processes.query_api.url());
    testkit::eventually("the order is confirmed", WAIT, || async {
        let body: Value = http.get(&order_url).send().await.ok()?.json().await.ok()?;
        (body["status"] == "CONFIRMED").then_some(())
    })
    .await;
    order_id
}

const TRACED: [&str; 5] = [
    "command-api",
    "outbox-relay",
    "projector",
    "saga-worker",
    "payment-gateway",
];

#[tokio::test]
async fn one_order_is_one_trace_across_every_process() {
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    kafka.config.ensure_topics().await.unwrap();
    let http = reqwest::Client::new();
    let receiver = Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()).await;
    let processes = Processes::start_with_env(
        &db,
        &kafka,
        &http,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    )
    .await;
    // The client's own trace: the command continues it.
    let client = eventstore::trace::new_traceparent();
    let (trace_id, client_span) = (&client[3..35], &client[36..52]);

    let order_id = place_confirmed_order(&http, &processes, Some(&client)).await;

    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let trace = receiver.trace(trace_id);
        let services: BTreeSet<&str> = trace.values().map(|s| s.service.as_str()).collect();
        if TRACED.iter().all(|service| services.contains(service)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans of {services:?} only in trace {trace_id}; received: {:#?}",
            receiver.received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The batch delay is short: let the last spans (acknowledgements,
    // commits) arrive too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let trace = receiver.trace(trace_id);
    let spans = describe(&trace);

    // The request's span continues the client's trace.
    let command = trace
        .values()
        .find(|s| {
            s.service == "command-api" && s.name == "command" && s.parent_span_id == client_span
        })
        .unwrap_or_else(|| panic!("no command span under the client's span:\n{spans}"));
    // Its events carry its traceparent, so every consumer joins the trace.
    let stored: Option<String> = sqlx::query_scalar(
        "SELECT metadata->>'traceparent' FROM eventstore.events
         WHERE stream_id = $1::uuid ORDER BY stream_version LIMIT 1",
    )
    .bind(&order_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        stored,
        Some(format!("00-{trace_id}-{}-01", command.span_id)),
        "the OrderPlaced event carries the command span's traceparent"
    );

    for (service, name) in [
        ("command-api", "append"),
        ("outbox-relay", "publish"),
        ("projector", "project"),
        ("saga-worker", "handle"),
        ("saga-worker", "payment"),
        ("saga-worker", "http_request"),
        ("payment-gateway", "request"),
    ] {
        let found = trace.values().any(|span| {
            span.service == service
                && span.name == name
                && descends_from(&trace, span, &command.span_id)
        });
        assert!(
            found,
            "no {service} `{name}` span descending from the command span:\n{spans}"
        );
    }
    // A read with the client's traceparent joins the trace too.
    let read = http
        .get(format!("{}/orders/{order_id}", processes.query_api.url()))
        .header("traceparent", &client)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    testkit::eventually("the query API's span", WAIT, || async {
        receiver
            .trace(trace_id)
            .values()
            .any(|s| {
                s.service == "query-api" && s.name == "request" && s.parent_span_id == client_span
            })
            .then_some(())
    })
    .await;

    // The gateway's server span is the child of the saga's client call.
    let gateway = trace
        .values()
        .find(|s| s.service == "payment-gateway" && s.name == "request")
        .unwrap();
    let caller = &trace[&gateway.parent_span_id];
    assert_eq!(
        (caller.service.as_str(), caller.name.as_str()),
        ("saga-worker", "http_request"),
        "{spans}"
    );
}

// Multi-threaded: the receiver must answer while this thread waits for the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_process_exports_the_spans_it_still_holds() {
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    kafka.config.ensure_topics().await.unwrap();
    let http = reqwest::Client::new();
    let receiver = Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()).await;
    // A batch delay longer than the test: only the flush at exit sends.
    let mut processes = Processes::start_with_env(
        &db,
        &kafka,
        &http,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000".into()),
        ],
    )
    .await;
    let client = eventstore::trace::new_traceparent();
    post_json(
        &http,
        format!("{}/products", processes.command_api.url()),
        json!({"name": "Mug", "price_cents": 500, "initial_stock": 3}),
        Some(&client),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver.trace(&client[3..35]).is_empty(),
        "nothing sent yet"
    );

    let status = processes.command_api.terminate();
    assert!(status.success(), "command-api stopped cleanly: {status}");

    let trace = receiver.trace(&client[3..35]);
    let names: BTreeSet<&str> = trace
        .values()
        .filter(|span| span.service == "command-api")
        .map(|span| span.name.as_str())
        .collect();
    assert!(
        names.contains("command") && names.contains("append"),
        "spans exported at exit: {names:?}"
    );
}

#[tokio::test]
async fn nothing_is_exported_without_an_endpoint() {
    let (db, kafka) = (TestDatabase::create().await, TestKafka::create().await);
    kafka.config.ensure_topics().await.unwrap();
    let http = reqwest::Client::new();
    // Listen where an exporter on by default would send (the OTLP/HTTP
    // default endpoint), when that port is free.
    let default = SocketAddr::from(([127, 0, 0, 1], 4318));
    let listener = match TcpListener::bind(default).await {
        Ok(listener) => listener,
        Err(_) => TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let receiver = Receiver::start(listener).await;
    // Everything but the endpoint (empty counts as unset).
    let processes = Processes::start_with_env(
        &db,
        &kafka,
        &http,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", String::new()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ("OTEL_SERVICE_NAME", "should-not-export".into()),
        ],
    )
    .await;

    place_confirmed_order(&http, &processes, None).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_eq!(receiver.requests(), 0, "{:?}", receiver.received);
    drop(processes);
}

#[tokio::test]
async fn a_collector_that_cannot_be_reached_is_logged_and_commands_go_on() {
    let db = TestDatabase::create().await;
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let address = e2e::processes::free_address();
    let mut child = std::process::Command::new(e2e::processes::binary("command-api"))
        .env("DATABASE_URL", &db.url)
        .env("COMMAND_API_BIND", address.to_string())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &dead_url)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://{address}/products");
    let created = testkit::eventually("the command API answers", WAIT, || async {
        let response = http
            .post(&url)
            .json(&json!({"name": "Mug", "price_cents": 500, "initial_stock": 1}))
            .send()
            .await
            .ok()?;
        Some(response.status())
    })
    .await;
    assert_eq!(
        created,
        StatusCode::CREATED,
        "export failures do not touch commands"
    );
    // The exporter retries a few times before it gives the batch up.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ExportError") || stderr.contains("Export.Failed"),
        "a failing export is logged:\n{stderr}"
    );
}
