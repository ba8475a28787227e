//! A simulator on port 0 that logs the requests it receives, and client settings for tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::{self, Next};
use payment_client::{ChargeRequest, HttpPaymentProvider, ProviderConfig};
use payment_gateway::ledger::{self, Charge};
use payment_gateway::{AppState, Behaviour};
use testkit::TestDatabase;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A W3C traceparent the tests send.
pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// What the simulator saw of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub traceparent: Option<String>,
}

impl Seen {
    fn of(request: &Request) -> Self {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .map(|v| v.to_str().expect("ascii").to_owned())
        };
        Self {
            method: request.method().to_string(),
            path: request.uri().path().to_owned(),
            idempotency_key: header("idempotency-key"),
            traceparent: header("traceparent"),
        }
    }
}

/// The simulator, with a log of the requests that reached it.
pub struct Simulator {
    pub address: SocketAddr,
    pub db: TestDatabase,
    seen: Arc<Mutex<Vec<Seen>>>,
    shutdown: CancellationToken,
}

impl Simulator {
    /// Starts the simulator over a fresh database.
    pub async fn spawn(behaviour: Behaviour) -> Self {
        testkit::init_logging();
        let db = TestDatabase::create().await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = payment_gateway::router(AppState::new(db.pool.clone(), behaviour)).layer(
            middleware::from_fn(move |request: Request, next: Next| {
                let log = log.clone();
                async move {
                    let entry = Seen::of(&request);
                    log.lock().unwrap().push(entry);
                    next.run(request).await
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        tokio::spawn(platform::http::serve(listener, app, shutdown.clone()));
        Self {
            address,
            db,
            seen,
            shutdown,
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The ledger rows of `reference`.
    pub async fn ledger(&self, reference: Uuid) -> Vec<Charge> {
        ledger::charges_for(&self.db.pool, reference)
            .await
            .expect("read ledger")
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Simulated slow answers (tok_timeout, tok_hang), well over [`REQUEST_TIMEOUT`].
pub const SLOW: Duration = Duration::from_millis(1000);

/// The client's request timeout in these tests.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(300);

/// A simulator whose slow answers take [`SLOW`].
pub fn slow() -> Behaviour {
    Behaviour {
        slow_response: SLOW,
        ..Behaviour::default()
    }
}

/// Fast client settings for `url`: 300 ms timeout, 3 attempts, short backoff.
pub fn config(url: &str) -> ProviderConfig {
    ProviderConfig {
        connect_timeout_ms: 200,
        request_timeout_ms: u64::try_from(REQUEST_TIMEOUT.as_millis()).unwrap(),
        max_attempts: 3,
        backoff_base_ms: 10,
        backoff_max_ms: 50,
        breaker_failures: 5,
        breaker_cooldown_ms: 400,
        ..ProviderConfig::new(url)
    }
}

/// A client with `config`.
pub fn provider(config: ProviderConfig) -> HttpPaymentProvider {
    HttpPaymentProvider::new(config).expect("client")
}

/// A charge of `amount_cents` EUR with `token`, a fresh key and reference, and a traceparent.
pub fn charge_request(token: &str, amount_cents: i64) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: format!("pay-{}", Uuid::new_v4()),
        amount_cents,
        currency: "EUR".to_owned(),
        token: token.to_owned(),
        reference: Uuid::new_v4(),
        traceparent: Some(TRACEPARENT.to_owned()),
    }
}

/// A local port that accepts connections and closes them at once, counting them:
/// a provider that is down, where attempts to reach it can be counted.
pub struct DeadProvider {
    pub address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl DeadProvider {
    /// Starts accepting and dropping.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (count, stopped) = (accepted.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stopped.cancelled() => return,
                    connection = listener.accept() => {
                        if let Ok((socket, _)) = connection {
                            count.fetch_add(1, Ordering::SeqCst);
                            drop(socket);
                        }
                    }
                }
            }
        });
        Self {
            address,
            accepted,
            stop,
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for DeadProvider {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
