//! The system under test: a fresh database and topic prefix, the gateway
//! behind a proxy the run can cut, and every process under the `make run`
//! supervisor (`infra/run-all.sh`) with several instances of each worker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool};
use testkit::database::{with_credentials, with_database};
use testkit::TcpProxy;
use tokio::process::{Child, Command};

use crate::Args;

/// Where the gateway simulator listens (its default).
const GATEWAY: &str = "127.0.0.1:8082";

/// A running system and what the run needs to reach it.
pub struct System {
    /// The run's database, as the application role.
    pub database_url: String,
    /// A pool on it for the run's own reads (canaries, drain checks).
    pub pool: PgPool,
    /// Topic prefix of this run.
    pub topic_prefix: String,
    /// Command API replicas.
    pub command_apis: Vec<String>,
    /// The relays' admin endpoints (to find the leader).
    pub relay_admins: Vec<String>,
    /// The proxy the saga workers reach the gateway through.
    pub gateway_proxy: TcpProxy,
    /// Where the supervisor keeps each instance's pid.
    pub run_dir: PathBuf,
    /// The supervisor's combined log.
    pub log_path: PathBuf,
    supervisor: Child,
}

impl System {
    /// Creates the run's database and topics, and starts every process.
    pub async fn start(args: &Args, out_dir: &Path, run_id: &str) -> anyhow::Result<Self> {
        let owner_url = &args.owner_database_url;
        let database = format!("chaos_{}", run_id.replace('-', "_"));
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(owner_url)
            .await
            .with_context(|| format!("connecting to {owner_url} (is `make infra-up` done?)"))?;
        admin
            .execute(format!("CREATE DATABASE {database}").as_str())
            .await
            .context("creating the run's database")?;
        admin.close().await;
        let owner_pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&with_database(owner_url, &database))
            .await?;
        platform::db::migrate(&owner_pool)
            .await
            .context("migrating the run's database")?;
        owner_pool.close().await;

        let database_url = with_database(&args.database_url, &database);
        let query_url = with_credentials(
            &database_url,
            credentials_of(&args.query_database_url).unwrap_or("orders_query:orders_query"),
        );
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&database_url)
            .await?;
        let topic_prefix = format!("chaos-{run_id}.");
        let gateway_proxy = TcpProxy::start(GATEWAY.parse()?).await;
        let run_dir = out_dir.join("run");
        let log_path = out_dir.join("system.log");
        let log = std::fs::File::create(&log_path)?;

        let mut command = Command::new("bash");
        command
            .arg(args.repo.join("infra/run-all.sh"))
            .current_dir(&args.repo)
            .env(
                "PROCS",
                "command-api outbox-relay projector query-api payment-gateway saga-worker",
            )
            .env("BIN_DIR", &args.bin_dir)
            .env("RUN_DIR", &run_dir)
            .env("DATABASE_URL", &database_url)
            .env("QUERY_DATABASE_URL", &query_url)
            .env("KAFKA_BROKERS", &args.kafka_brokers)
            .env("KAFKA_TOPIC_PREFIX", &topic_prefix)
            .env("COMMAND_APIS", args.instances.to_string())
            .env("RELAYS", args.instances.to_string())
            .env("PROJECTORS", args.instances.to_string())
            .env("SAGA_WORKERS", args.instances.to_string())
            .env(
                "PAYMENT_GATEWAY_URL",
                format!("http://{}", gateway_proxy.address()),
            )
            .env(
                "SAGA_PAYMENT_DEADLINE_MS",
                args.payment_deadline_ms.to_string(),
            )
            .env("PAYMENT_GATEWAY_SLOW_RESPONSE_MS", "1500")
            .env(
                "RELAY_FAILPOINT_ABORT_AFTER_ACK",
                args.relay_abort_after_ack.to_string(),
            )
            // Every fault restarts something; the cap is for real crash loops.
            .env("RESTART_LIMIT", "40")
            .env("RESTART_BACKOFF_MAX_MS", "4000")
            .env("RUST_LOG", &args.system_log)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let supervisor = command.spawn().context("starting infra/run-all.sh")?;

        let command_apis = (0..args.instances)
            .map(|n| format!("http://127.0.0.1:{}", 8080 + 100 * n))
            .collect();
        let relay_admins = (0..args.instances)
            .map(|n| format!("http://127.0.0.1:{}", 9101 + 100 * n))
            .collect();
        let system = Self {
            database_url,
            pool,
            topic_prefix,
            command_apis,
            relay_admins,
            gateway_proxy,
            run_dir,
            log_path,
            supervisor,
        };
        system.wait_ready(args.instances).await?;
        Ok(system)
    }

    /// Waits until every instance answers its readiness probe.
    async fn wait_ready(&self, instances: u16) -> anyhow::Result<()> {
        let mut probes = Vec::new();
        for n in 0..instances {
            for base in [8080, 8081, 9101, 9102, 9103] {
                if base == 8081 && n > 0 {
                    continue;
                }
                probes.push(format!("http://127.0.0.1:{}/health/ready", base + 100 * n));
            }
        }
        probes.push(format!("http://{GATEWAY}/health/ready"));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(90);
        for probe in probes {
            loop {
                let ok = client
                    .get(&probe)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "{probe} not ready after 90 s (see {})",
                        self.log_path.display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// The current pid of every instance, by name (`projector`, `projector.2`, ...).
    pub fn instances(&self) -> BTreeMap<String, u32> {
        let mut found = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(&self.run_dir) else {
            return found;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(instance) = name.strip_suffix(".pid") else {
                continue;
            };
            if let Some(pid) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                found.insert(instance.to_owned(), pid);
            }
        }
        found
    }

    /// The relay instance that holds the leader lock, if one does.
    pub async fn relay_leader(&self) -> Option<String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?;
        for (n, admin) in self.relay_admins.iter().enumerate() {
            let Ok(response) = client.get(format!("{admin}/metrics")).send().await else {
                continue;
            };
            let Ok(text) = response.text().await else {
                continue;
            };
            if text.lines().any(|l| l.trim() == "relay_is_leader 1") {
                return Some(if n == 0 {
                    "outbox-relay".to_owned()
                } else {
                    format!("outbox-relay.{}", n + 1)
                });
            }
        }
        None
    }

    /// Stops every process (the supervisor's SIGTERM path) and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.supervisor.id() {
            signal(pid, "TERM");
        }
        match tokio::time::timeout(Duration::from_secs(30), self.supervisor.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.supervisor.kill().await?;
            }
        }
        self.pool.close().await;
        Ok(())
    }
}

/// `user:password` of a postgres URL.
fn credentials_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.rsplit_once('@')?.0)
}

/// Sends signal `name` (`KILL`, `STOP`, `CONT`, `TERM`) to `pid`.
pub fn signal(pid: u32, name: &str) -> bool {
    std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
