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

/// A local port that is free now, below the kernel's ephemeral range (where
/// the port-0 listeners of other tests land). Another process may still
/// take it before the child binds it: [`Process::wait_ready`] then starts
/// the child again on another port.
pub fn free_address() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (std::process::id().wrapping_mul(7919).wrapping_add(n) % 12_000);
        let address = SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).expect("< 32000")));
        if std::net::TcpListener::bind(address).is_ok() {
            return address;
        }
    }
}

/// A running child process, killed when dropped.
pub struct Process {
    /// The binary's name.
    pub name: &'static str,
    /// Where it serves HTTP (its API, or its admin endpoint for workers).
    pub address: SocketAddr,
    child: Child,
    command: Command,
    bind_var: &'static str,
}

impl Process {
    /// Base URL of its HTTP endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Starts `command` with `bind_var` set to a free address.
    fn spawn(name: &'static str, bind_var: &'static str, mut command: Command) -> Self {
        let address = free_address();
        command.env(bind_var, address.to_string());
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("start {name}: {error}"));
        Self {
            name,
            address,
            child,
            command,
            bind_var,
        }
    }

    /// Waits until `GET /health/ready` answers 200, or panics after
    /// `timeout`. A child that exits early (its port was taken meanwhile)
    /// is started again on another port, twice at most.
    pub async fn wait_ready(&mut self, http: &reqwest::Client, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut restarts = 0;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(restarts < 2, "{} exited early: {status}", self.name);
                restarts += 1;
                self.address = free_address();
                self.command.env(self.bind_var, self.address.to_string());
                self.child = self
                    .command
                    .spawn()
                    .unwrap_or_else(|error| panic!("restart {}: {error}", self.name));
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

impl Process {
    /// Stops it as an operator would (SIGTERM), and waits until it has exited.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}: {status}", self.name);
        self.child.wait().expect("wait for the child")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The admin token the console of [`Processes::start`] is given.
pub const CONSOLE_ADMIN_TOKEN: &str = "e2e-console-admin-token";

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
    /// The web console (re-drive with [`CONSOLE_ADMIN_TOKEN`]).
    pub console: Process,
}

impl Processes {
    /// Starts every binary over `db` and `kafka` and waits until each is ready.
    pub async fn start(db: &TestDatabase, kafka: &TestKafka, http: &reqwest::Client) -> Self {
        Self::start_with_env(db, kafka, http, &[]).await
    }

    /// As [`start`](Self::start), with `env` set for every process too.
    pub async fn start_with_env(
        db: &TestDatabase,
        kafka: &TestKafka,
        http: &reqwest::Client,
        env: &[(&str, String)],
    ) -> Self {
        let prefix = kafka.config.topic_prefix.clone();
        let spawn = |name: &'static str, bind_var: &'static str, extra: &[(&str, String)]| {
            let mut command = Command::new(binary(name));
            command
                .env("DATABASE_URL", &db.url)
                .env("QUERY_DATABASE_URL", &db.query_url)
                .env("KAFKA_BROKERS", &kafka.config.brokers)
                .env("KAFKA_TOPIC_PREFIX", &prefix)
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdout(Stdio::null());
            for (key, value) in env.iter().chain(extra) {
                command.env(key, value);
            }
            Process::spawn(name, bind_var, command)
        };
        let timeout = Duration::from_secs(60);
        // Ready first: the saga worker is given its address.
        let mut payment_gateway = spawn("payment-gateway", "PAYMENT_GATEWAY_BIND", &[]);
        payment_gateway.wait_ready(http, timeout).await;
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
                    // Prune dedup rows as soon as it is safe.
                    ("SAGA_DEDUP_PRUNE_INTERVAL_SECS", "1".into()),
                    ("SAGA_DEDUP_RETENTION_SECS", "0".into()),
                    ("PAYMENT_GATEWAY_URL", gateway_url),
                ],
            ),
            console: spawn(
                "console",
                "CONSOLE_BIND",
                &[
                    ("CONSOLE_ADMIN_TOKEN", CONSOLE_ADMIN_TOKEN.into()),
                    ("CONSOLE_REFRESH_MS", "500".into()),
                ],
            ),
            payment_gateway,
        };
        for process in processes.all_mut() {
            process.wait_ready(http, timeout).await;
        }
        processes
    }

    /// Every process.
    pub fn all_mut(&mut self) -> [&mut Process; 7] {
        [
            &mut self.command_api,
            &mut self.query_api,
            &mut self.payment_gateway,
            &mut self.outbox_relay,
            &mut self.projector,
            &mut self.saga_worker,
            &mut self.console,
        ]
    }
}
