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

/// What [`inject`] did: the faults injected, and those it could not inject.
pub struct Injected {
    /// The faults injected, in order.
    pub faults: Vec<Fault>,
    /// Faults that could not be injected (e.g. a Postgres the run did not
    /// start cannot be crashed by `infra/postgres.sh`): each fails the run,
    /// since its figures would claim a recovery from a fault that never came.
    pub not_injected: Vec<String>,
}

/// Injects faults until `stop` and the end of a round of kinds, waiting
/// for recovery after each.
pub async fn inject(
    system: &System,
    schedule: &Schedule,
    canary_product: Uuid,
    started: Instant,
    stop: CancellationToken,
) -> Injected {
    let mut plan = Plan::new(schedule.seed);
    let mut faults = Vec::new();
    let mut not_injected = Vec::new();
    loop {
        // Past the run's length, a round of kinds still under way is finished,
        // so every kind asked for is injected at least once.
        if stop.is_cancelled() && plan.round_done() {
            break;
        }
        let gap = plan.seconds(schedule.gap_s.0, schedule.gap_s.1);
        tokio::select! {
            () = stop.cancelled(), if plan.round_done() => break,
            () = tokio::time::sleep(gap) => {}
        }
        let Some(kind) = plan.next_kind(&schedule.kinds) else {
            continue;
        };
        let at = started.elapsed();
        let (target, lasted) = match apply(system, schedule, kind, &mut plan).await {
            Applied::Done(target, lasted) => (target, lasted),
            Applied::NoTarget => continue,
            Applied::Failed(reason) => {
                eprintln!(
                    "chaos: {kind:?} at {:.1}s NOT injected: {reason}",
                    at.as_secs_f64()
                );
                not_injected.push(format!("{kind:?}: {reason}"));
                continue;
            }
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
    Injected {
        faults,
        not_injected,
    }
}

/// The seeded choices of a schedule: which kind comes next (every kind
/// once per round, in a seeded order), which instance it hits (every
/// instance once per round of its kind), and how long things last.
pub struct Plan {
    rng: StdRng,
    upcoming: Vec<FaultKind>,
    victims: BTreeMap<FaultKind, Vec<String>>,
}

impl Plan {
    /// The plan of `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed.rotate_left(17) ^ 0xc4a0_5eed),
            upcoming: Vec::new(),
            victims: BTreeMap::new(),
        }
    }

    /// The next kind of fault among `kinds` (None if there are none).
    pub fn next_kind(&mut self, kinds: &[FaultKind]) -> Option<FaultKind> {
        if self.upcoming.is_empty() {
            self.upcoming = kinds.to_vec();
            self.upcoming.shuffle(&mut self.rng);
        }
        (!self.upcoming.is_empty()).then(|| self.upcoming.remove(0))
    }

    /// Whether the current round of kinds is complete.
    pub fn round_done(&self) -> bool {
        self.upcoming.is_empty()
    }

    /// The instance a fault of `kind` hits next, among `names`.
    pub fn victim<'a>(
        &mut self,
        kind: FaultKind,
        names: impl Iterator<Item = &'a String>,
    ) -> Option<String> {
        let queue = self.victims.entry(kind).or_default();
        if queue.is_empty() {
            queue.extend(names.cloned());
            queue.shuffle(&mut self.rng);
        }
        queue.pop()
    }

    /// A duration between `min` and `max` seconds.
    pub fn seconds(&mut self, min: f64, max: f64) -> Duration {
        Duration::from_secs_f64(self.rng.gen_range(min..max))
    }
}

/// The result of applying one fault.
enum Applied {
    /// Applied to this target, for this long.
    Done(String, Duration),
    /// Nothing to apply it to at that moment (e.g. no relay was leader).
    NoTarget,
    /// It could not be applied.
    Failed(String),
}

/// Applies one fault.
async fn apply(system: &System, schedule: &Schedule, kind: FaultKind, plan: &mut Plan) -> Applied {
    let begun = Instant::now();
    let target = match kind {
        FaultKind::Kill | FaultKind::Pause => {
            let instances = system.instances();
            let Some(name) = plan.victim(kind, instances.keys()) else {
                return Applied::NoTarget;
            };
            let Some(&pid) = instances.get(&name) else {
                return Applied::NoTarget;
            };
            if kind == FaultKind::Kill {
                signal(pid, "KILL");
            } else {
                signal(pid, "STOP");
                tokio::time::sleep(plan.seconds(1.0, 5.0)).await;
                signal(pid, "CONT");
            }
            name
        }
        FaultKind::LeaderPause => {
            let Some(leader) = system.relay_leader().await else {
                return Applied::NoTarget;
            };
            let Some(&pid) = system.instances().get(&leader) else {
                return Applied::NoTarget;
            };
            signal(pid, "STOP");
            tokio::time::sleep(schedule.leader_pause).await;
            signal(pid, "CONT");
            leader
        }
        FaultKind::PostgresCrash | FaultKind::KafkaCrash => {
            let (script, target) = if kind == FaultKind::PostgresCrash {
                ("postgres.sh", "postgres")
            } else {
                ("kafka.sh", "kafka")
            };
            let down = plan.seconds(1.0, 4.0);
            if !infra(&schedule.repo, script, "crash").await {
                return Applied::Failed(format!(
                    "`infra/{script} crash` failed (a server this checkout's infra/ did not start cannot be crashed)"
                ));
            }
            tokio::time::sleep(down).await;
            infra(&schedule.repo, script, "up").await;
            target.to_owned()
        }
        FaultKind::GatewayOutage => {
            system.gateway_proxy.cut();
            tokio::time::sleep(plan.seconds(3.0, 10.0)).await;
            system.gateway_proxy.restore();
            "gateway".to_owned()
        }
    };
    Applied::Done(target, begun.elapsed())
}

/// Runs `infra/<script> <action>`; false (and logged) if it failed.
async fn infra(repo: &Path, script: &str, action: &str) -> bool {
    let status = tokio::process::Command::new("bash")
        .arg(repo.join("infra").join(script))
        .arg(action)
        .current_dir(repo)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    let ok = status.is_ok_and(|s| s.success());
    if !ok {
        eprintln!("chaos: `infra/{script} {action}` failed");
    }
    ok
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

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [FaultKind; 6] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::LeaderPause,
        FaultKind::PostgresCrash,
        FaultKind::KafkaCrash,
        FaultKind::GatewayOutage,
    ];

    fn trace(seed: u64) -> Vec<String> {
        let names: Vec<String> = ["projector", "projector.2", "saga-worker"]
            .map(String::from)
            .to_vec();
        let mut plan = Plan::new(seed);
        (0..30)
            .map(|_| {
                let kind = plan.next_kind(&ALL).expect("a kind");
                let victim = plan.victim(kind, names.iter()).expect("a victim");
                format!("{kind:?} {victim} {:?}", plan.seconds(1.0, 5.0))
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        assert_eq!(trace(42), trace(42));
        assert_ne!(trace(42), trace(43));
    }

    #[test]
    fn every_kind_comes_once_per_round_and_every_instance_once_per_round_of_its_kind() {
        let mut plan = Plan::new(7);
        for _ in 0..5 {
            let mut round: Vec<FaultKind> = (0..ALL.len())
                .map(|_| plan.next_kind(&ALL).expect("a kind"))
                .collect();
            round.sort();
            assert_eq!(round, ALL.to_vec());
        }
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let mut hit: Vec<String> = (0..3)
            .map(|_| {
                plan.victim(FaultKind::Kill, names.iter())
                    .expect("a victim")
            })
            .collect();
        hit.sort();
        assert_eq!(hit, names);
        assert_eq!(plan.next_kind(&[]), None);
    }
}
