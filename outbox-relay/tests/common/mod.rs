//! Helpers shared by the tests that run the real `outbox-relay` binary.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use eventstore::{append, ExpectedVersion, Metadata, NewEvent};
use sqlx::PgPool;
use testkit::kafka::Record;
use testkit::{TestDatabase, TestKafka};
use uuid::Uuid;

/// The relay binary configured for `db` and `kafka`, quick to poll and to
/// take over, in small batches; callers add settings and spawn it.
pub fn relay_command(db: &TestDatabase, kafka: &TestKafka) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outbox-relay"));
    command
        .env("DATABASE_URL", &db.url)
        .env("KAFKA_BROKERS", &kafka.config.brokers)
        .env("KAFKA_TOPIC_PREFIX", &kafka.config.topic_prefix)
        .env("ADMIN_BIND", "127.0.0.1:0")
        .env("RELAY_POLL_INTERVAL_MS", "50")
        .env("RELAY_STANDBY_RETRY_MS", "200")
        .env("RELAY_BATCH_SIZE", "20")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

/// A spawned relay, killed (SIGKILL) when dropped, so a failing test
/// leaves no process behind.
pub struct RelayProcess(pub Child);

impl RelayProcess {
    /// Spawns `command`.
    pub fn spawn(command: &mut Command) -> Self {
        Self(command.spawn().expect("start outbox-relay"))
    }

    /// Spawns `command` with its stderr collected (and echoed to the
    /// test's stderr), to check what it logged.
    pub fn spawn_logged(command: &mut Command) -> (Self, Log) {
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .expect("start outbox-relay");
        let log = Log::default();
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                lines.0.lock().expect("log lock").push(line);
            }
        });
        (Self(child), log)
    }

    /// Sends `signal` (a `kill` name such as `STOP` or `CONT`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a process wrote to stderr, line by line.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    /// How many lines contain `text`.
    pub fn count(&self, text: &str) -> usize {
        let lines = self.0.lock().expect("log lock");
        lines.iter().filter(|line| line.contains(text)).count()
    }
}

/// A free local port for a process's admin endpoint.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// The value of the unlabelled gauge `name` on the admin endpoint at `port`
/// (`None` if the endpoint does not answer or lacks it).
pub fn admin_gauge(port: u16, name: &str) -> Option<f64> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    testkit::prometheus::Exposition::parse(body)
        .ok()?
        .value(name, &[])
}

/// Backend pids holding the relay's leader lock in this database.
pub async fn leader_lock_holders(db: &TestDatabase) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_locks
         WHERE locktype = 'advisory' AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND ((classid::bigint << 32) | objid::bigint) = $1",
    )
    .bind(eventstore::relay::LEADER_LOCK_KEY)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// Appends one event to `stream` (type `orders`) in its own transaction.
pub async fn append_one(pool: &PgPool, stream: Uuid, n: usize) {
    let mut tx = pool.begin().await.unwrap();
    append(
        &mut tx,
        "orders",
        stream,
        ExpectedVersion::Any,
        &[event(n)],
        &metadata(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// A test event carrying `n`.
pub fn event(n: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "TestHappened".into(),
        schema_version: 1,
        payload: serde_json::json!({ "n": n }),
    }
}

/// Fresh command metadata.
pub fn metadata() -> Metadata {
    Metadata::for_command(Uuid::now_v7())
}

/// Rows left in the outbox.
pub async fn outbox_rows(db: &TestDatabase) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM eventstore.outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// Checks that per stream the first occurrence of each version comes in
/// version order (a version never arrives before its predecessor; repeats
/// of earlier versions are at-least-once duplicates) and returns the
/// highest version per stream.
pub fn assert_first_occurrences_in_order(records: &[Record]) -> HashMap<String, i64> {
    let mut highest: HashMap<String, i64> = HashMap::new();
    for record in records {
        let version = record.value["stream_version"].as_i64().unwrap();
        let seen = highest.entry(record.key.clone()).or_insert(0);
        assert!(
            version <= *seen + 1,
            "stream {} skipped to version {version} after {seen}",
            record.key
        );
        *seen = (*seen).max(version);
    }
    highest
}
