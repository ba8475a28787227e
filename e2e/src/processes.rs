//! The real binaries of the system as child processes, each on its own
//! free ports, over a test's database and topic prefix: for tests about what
//! a process exposes (metrics, health) rather than what it computes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use testkit::{TestDatabase, TestKafka};

/// A binary built beside the test executable by `cargo test --workspace`.
pub fn binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|test| Some(test.parent()?.parent()?.join(name)))
        .filter(|path| path.exists())
        .unwrap_or_else(|| panic!("the {name} binary is built by `cargo test --workspace`"))
}

/// A free local port (bound and released; another process could take it
/// first, which would make the child fail to bind and the test fail loudly).
pub fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

/// A running child process, killed when dropped.
pub struct Process {
    /// The binary's name.
    pub name: &'static str,
    /// Where it serves HTTP (its API, or its admin endpoint for workers).
    pub address: SocketAddr,
    child: Child,
}

impl Process {
    /// Base URL of its HTTP endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Waits until `GET /health/ready` answers 200, or panics (with the
    /// child's exit status if it died) after `timeout`.
    pub async fn wait_ready(&mut self, http: &reqwest::Client, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited early: {status}", self.name);
            }
            let ready = http
                .get(format!("{}/health/ready", self.url()))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} not ready after {timeout:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every process of the system, as `make run` starts them.
pub struct Processes {
    /// The command API.
    pub command_api: Process,
    /// The query API.
    pub query_api: Process,
    /// The payment-gateway simulator.
    pub payment_gateway: Process,
    /// The outbox relay (admin endpoint).
    pub outbox_relay: Process,
    /// The projector (admin endpoint).
    pub projector: Process,
    /// The saga worker (admin endpoint).
    pub saga_worker: Process,
}

impl Processes {
    /// Starts every binary over `db` and `kafka` and waits until each is ready.
    pub async fn start(db: &TestDatabase, kafka: &TestKafka, http: &reqwest::Client) -> Self {
        let prefix = kafka.config.topic_prefix.clone();
        let spawn = |name: &'static str, bind_var: &str, extra: &[(&str, String)]| {
            let address = free_address();
            let mut command = Command::new(binary(name));
            command
                .env("DATABASE_URL", &db.url)
                .env("QUERY_DATABASE_URL", &db.query_url)
                .env("KAFKA_BROKERS", &kafka.config.brokers)
                .env("KAFKA_TOPIC_PREFIX", &prefix)
                .env(bind_var, address.to_string())
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdout(Stdio::null());
            for (key, value) in extra {
                command.env(key, value);
            }
            let child = command
                .spawn()
                .unwrap_or_else(|error| panic!("start {name}: {error}"));
            Process {
                name,
                address,
                child,
            }
        };
        let payment_gateway = spawn("payment-gateway", "PAYMENT_GATEWAY_BIND", &[]);
        let gateway_url = payment_gateway.url();
        let mut processes = Self {
            command_api: spawn("command-api", "COMMAND_API_BIND", &[]),
            query_api: spawn("query-api", "QUERY_API_BIND", &[]),
            outbox_relay: spawn(
                "outbox-relay",
                "ADMIN_BIND",
                &[("RELAY_POLL_INTERVAL_MS", "100".into())],
            ),
            projector: spawn(
                "projector",
                "ADMIN_BIND",
                &[("PROJECTOR_GROUP_ID", format!("{prefix}projector"))],
            ),
            saga_worker: spawn(
                "saga-worker",
                "ADMIN_BIND",
                &[
                    ("SAGA_GROUP_ID", format!("{prefix}saga")),
                    ("SAGA_TICK_MS", "100".into()),
                    ("SAGA_DEAD_LETTER_AFTER", "2".into()),
                    ("PAYMENT_GATEWAY_URL", gateway_url),
                ],
            ),
            payment_gateway,
        };
        let timeout = Duration::from_secs(60);
        for process in processes.all_mut() {
            process.wait_ready(http, timeout).await;
        }
        processes
    }

    /// Every process.
    pub fn all_mut(&mut self) -> [&mut Process; 6] {
        [
            &mut self.command_api,
            &mut self.query_api,
            &mut self.payment_gateway,
            &mut self.outbox_relay,
            &mut self.projector,
            &mut self.saga_worker,
        ]
    }
}
