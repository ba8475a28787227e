//! Faults on a seeded schedule, and how long the system takes to recover
//! from each.
//!
//! The seed fixes the schedule: which kind of fault comes when, its length
//! and its target (by instance name; every instance is killed, and paused,
//! once per round of its kind). Each kind appears once, in a seeded
//! order, before any repeats, so even a short run injects all of them. After
//! each fault ends, a canary order (its own product, a capturing token) is
//! placed and the time until the read model shows it CONFIRMED is the
//! recovery time.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::system::{signal, System};

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum FaultKind {
    /// `kill -9` of one instance (the supervisor restarts it).
    Kill,
    /// SIGSTOP, then SIGCONT a few seconds later.
    Pause,
    /// SIGSTOP of the active relay for longer than its leader lease.
    LeaderPause,
    /// Postgres stopped as by a crash (`pg_ctl stop -m immediate`), then started.
    PostgresCrash,
    /// The Kafka broker killed with SIGKILL, then started.
    KafkaCrash,
    /// The payment gateway unreachable (its proxy refuses connections).
    GatewayOutage,
}

/// One injected fault.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// Its kind.
    pub kind: FaultKind,
    /// What it hit (an instance name, `postgres`, `kafka`, `gateway`).
    pub target: String,
    /// Seconds into the run it started.
    pub at_s: f64,
    /// How long it lasted (s).
    pub lasted_s: f64,
    /// From its end until a new order was CONFIRMED (s); None if that took
    /// longer than the recovery budget.
    pub recovered_s: Option<f64>,
}

/// Settings of the schedule.
pub struct Schedule {
    /// Seed of the schedule.
    pub seed: u64,
    /// Quiet time between a recovery and the next fault (s), drawn from this range.
    pub gap_s: (f64, f64),
    /// How long a relay leader is paused (longer than its lease).
    pub leader_pause: Duration,
    /// The repository (for `infra/postgres.sh` and `infra/kafka.sh`).
    pub repo: std::path::PathBuf,
    /// The kinds of fault to inject.
    pub kinds: Vec<FaultKind>,
}

/// Injects faults until `stop`, waiting for recovery after each.
pub async fn inject(
    system: &System,
    schedule: &Schedule,
    canary_product: Uuid,
    started: Instant,
    stop: CancellationToken,
) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(schedule.seed.rotate_left(17) ^ 0xc4a0_5eed);
    let mut upcoming: Vec<FaultKind> = Vec::new();
    let mut faults = Vec::new();
    let mut victims = BTreeMap::new();
    loop {
        let gap = rng.gen_range(schedule.gap_s.0..schedule.gap_s.1);
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(Duration::from_secs_f64(gap)) => {}
        }
        if schedule.kinds.is_empty() {
            continue;
        }
        if upcoming.is_empty() {
            upcoming = schedule.kinds.clone();
            upcoming.shuffle(&mut rng);
        }
        let kind = upcoming.remove(0);
        let at = started.elapsed();
        let Some((target, lasted)) = apply(system, schedule, kind, &mut rng, &mut victims).await else {
            continue;
        };
        let recovered = canary(system, canary_product, Duration::from_secs(120)).await;
        let fault = Fault {
            kind,
            target,
            at_s: round(at.as_secs_f64()),
            lasted_s: round(lasted.as_secs_f64()),
            recovered_s: recovered.map(|d| round(d.as_secs_f64())),
        };
        println!(
            "  fault {:>3} at {:>6.1}s: {:?} {} for {:.1}s, recovered in {}",
            faults.len() + 1,
            fault.at_s,
            fault.kind,
            fault.target,
            fault.lasted_s,
            fault
                .recovered_s
                .map_or("(not within 120 s)".to_owned(), |s| format!("{s:.1}s")),
        );
        faults.push(fault);
    }
    faults
}

/// Applies one fault and returns its target and how long it lasted, or
/// None if it had no target (e.g. no relay was leader at that moment).
async fn apply(
    system: &System,
    schedule: &Schedule,
    kind: FaultKind,
    rng: &mut StdRng,
    victims: &mut BTreeMap<FaultKind, Vec<String>>,
) -> Option<(String, Duration)> {
    let begun = Instant::now();
    let target = match kind {
        FaultKind::Kill | FaultKind::Pause => {
            let instances = system.instances();
            let queue = victims.entry(kind).or_default();
            if queue.is_empty() {
                // Every instance once per round, in a seeded order.
                queue.extend(instances.keys().cloned());
                queue.shuffle(rng);
            }
            let name = queue.pop()?;
            let pid = *instances.get(&name)?;
            if kind == FaultKind::Kill {
                signal(pid, "KILL");
            } else {
                signal(pid, "STOP");
                tokio::time::sleep(Duration::from_secs_f64(rng.gen_range(1.0..5.0))).await;
                signal(pid, "CONT");
            }
            name
        }
        FaultKind::LeaderPause => {
            let leader = system.relay_leader().await?;
            let pid = *system.instances().get(&leader)?;
            signal(pid, "STOP");
            tokio::time::sleep(schedule.leader_pause).await;
            signal(pid, "CONT");
            leader
        }
        FaultKind::PostgresCrash => {
            infra(&schedule.repo, "postgres.sh", "crash").await;
            tokio::time::sleep(Duration::from_secs_f64(rng.gen_range(1.0..4.0))).await;
            infra(&schedule.repo, "postgres.sh", "up").await;
            "postgres".to_owned()
        }
        FaultKind::KafkaCrash => {
            infra(&schedule.repo, "kafka.sh", "crash").await;
            tokio::time::sleep(Duration::from_secs_f64(rng.gen_range(1.0..4.0))).await;
            infra(&schedule.repo, "kafka.sh", "up").await;
            "kafka".to_owned()
        }
        FaultKind::GatewayOutage => {
            system.gateway_proxy.cut();
            tokio::time::sleep(Duration::from_secs_f64(rng.gen_range(3.0..10.0))).await;
            system.gateway_proxy.restore();
            "gateway".to_owned()
        }
    };
    Some((target, begun.elapsed()))
}

/// Runs `infra/<script> <action>`, logging a failure (the run goes on: the
/// next canary shows whether the system recovered).
async fn infra(repo: &Path, script: &str, action: &str) {
    let status = tokio::process::Command::new("bash")
        .arg(repo.join("infra").join(script))
        .arg(action)
        .current_dir(repo)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("chaos: `infra/{script} {action}` failed");
    }
}

/// Places an order that must capture and waits until it is CONFIRMED in the
/// read model; returns how long that took, or None after `budget`. A canary
/// cancelled because its payment deadline passed during the fault is
/// replaced by a new one.
pub async fn canary(system: &System, product: Uuid, budget: Duration) -> Option<Duration> {
    let begun = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .ok()?;
    let mut attempt = 0usize;
    while begun.elapsed() < budget {
        let order = place_canary(system, &client, product, &mut attempt, begun, budget).await?;
        loop {
            if begun.elapsed() > budget {
                return None;
            }
            let status: Result<Option<String>, _> =
                sqlx::query_scalar("SELECT status FROM read.orders WHERE order_id = $1")
                    .bind(order)
                    .fetch_optional(&system.pool)
                    .await;
            match status.ok().flatten().as_deref() {
                Some("CONFIRMED") => return Some(begun.elapsed()),
                Some("CANCELLED" | "REJECTED") => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    None
}

/// Sends a canary order until a command API accepts it.
async fn place_canary(
    system: &System,
    client: &reqwest::Client,
    product: Uuid,
    attempt: &mut usize,
    begun: Instant,
    budget: Duration,
) -> Option<Uuid> {
    let key = Uuid::new_v4().to_string();
    let body = json!({
        "user_id": "canary",
        "lines": [{ "product_id": product, "quantity": 1 }],
        "payment": { "token": "tok_ok_canary" },
    });
    while begun.elapsed() < budget {
        let api = &system.command_apis[*attempt % system.command_apis.len()];
        *attempt += 1;
        let answer = client
            .post(format!("{api}/orders"))
            .header("Idempotency-Key", &key)
            .json(&body)
            .send()
            .await;
        if let Ok(response) = answer {
            if response.status().as_u16() == 201 {
                if let Ok(value) = response.json::<serde_json::Value>().await {
                    if let Some(id) = value["order_id"].as_str().and_then(|s| s.parse().ok()) {
                        return Some(id);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Faults by kind: count, and recovery p50 and max.
pub fn summarize(faults: &[Fault]) -> BTreeMap<FaultKind, (usize, Option<f64>, Option<f64>)> {
    let mut by_kind: BTreeMap<FaultKind, Vec<&Fault>> = BTreeMap::new();
    for fault in faults {
        by_kind.entry(fault.kind).or_default().push(fault);
    }
    by_kind
        .into_iter()
        .map(|(kind, list)| {
            let mut times: Vec<f64> = list.iter().filter_map(|f| f.recovered_s).collect();
            times.sort_by(f64::total_cmp);
            let p50 = (!times.is_empty()).then(|| times[(times.len() - 1) / 2]);
            (kind, (list.len(), p50, times.last().copied()))
        })
        .collect()
}

fn round(seconds: f64) -> f64 {
    (seconds * 10.0).round() / 10.0
}
