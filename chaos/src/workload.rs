//! The workload: orders on a handful of hot products, with declines, gateway
//! timeouts and hangs, flaky payments, cancels, restocks, and requests sent
//! again with the same `Idempotency-Key`.
//!
//! Every request carries a key and is retried with the same key and body
//! until it gets an answer that is not a transport error, a 5xx or a 409
//! "still in flight", so a replica that is killed or paused mid-request
//! costs a retry, never a lost or doubled command. Every answer is written to
//! the answers file the auditor checks (one way per key).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Payment tokens and how often each is used (per 100 orders).
const TOKENS: [(&str, u32); 5] = [
    ("tok_ok", 60),
    ("tok_decline_insufficient_funds", 12),
    ("tok_flaky", 12),
    ("tok_timeout", 10),
    ("tok_hang", 6),
];

/// A command sent (and possibly sent again).
#[derive(Clone)]
struct Request {
    key: String,
    path: String,
    body: Value,
}

/// What the workload did, for the report.
#[derive(Debug, Default, Serialize)]
pub struct WorkloadStats {
    /// Commands by kind (`place`, `cancel`, `restock`, `duplicate`).
    pub commands: BTreeMap<String, u64>,
    /// Final answers by status code.
    pub answers: BTreeMap<u16, u64>,
    /// Attempts that got a transport error, a 5xx or a 409 in flight, and were retried.
    pub retries: u64,
    /// Commands given up on (no answer within the retry budget).
    pub unanswered: u64,
}

/// The answers file and the shared state of the workload's tasks.
pub struct Workload {
    client: reqwest::Client,
    apis: Vec<String>,
    answers: Mutex<std::io::BufWriter<std::fs::File>>,
    sent: Mutex<Vec<Request>>,
    orders: Mutex<Vec<Uuid>>,
    products: Vec<Uuid>,
    stats: Mutex<WorkloadStats>,
    next_api: AtomicU64,
}

impl Workload {
    /// Registers `products` hot products with `stock` units each.
    pub async fn prepare(
        apis: Vec<String>,
        answers_path: &Path,
        products: usize,
        stock: u32,
    ) -> anyhow::Result<Arc<Self>> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let mut workload = Self {
            client,
            apis,
            answers: Mutex::new(std::io::BufWriter::new(std::fs::File::create(
                answers_path,
            )?)),
            sent: Mutex::new(Vec::new()),
            orders: Mutex::new(Vec::new()),
            products: Vec::new(),
            stats: Mutex::new(WorkloadStats::default()),
            next_api: AtomicU64::new(0),
        };
        for n in 0..products {
            let id = Uuid::new_v4();
            let request = Request {
                key: Uuid::new_v4().to_string(),
                path: "/products".into(),
                body: json!({
                    "product_id": id,
                    "name": format!("hot product {n}"),
                    "price_cents": 250 * (n as u64 + 1),
                    "initial_stock": stock,
                }),
            };
            let (status, _) = workload
                .send(&request, Instant::now() + Duration::from_secs(60))
                .await
                .ok_or_else(|| anyhow::anyhow!("could not register a product"))?;
            anyhow::ensure!(status == 201, "registering a product answered {status}");
            workload.products.push(id);
        }
        Ok(Arc::new(workload))
    }

    /// The products the workload orders.
    pub fn products(&self) -> &[Uuid] {
        &self.products
    }

    /// Runs `tasks` concurrent clients until `stop`, each with its own RNG
    /// seeded from `seed`, together sending about `rate` commands a second
    /// (an open load: a client whose command waited out an outage does not
    /// make up for it, so a backlog drains once the fault is over).
    pub async fn run(
        self: &Arc<Self>,
        seed: u64,
        tasks: usize,
        rate: f64,
        stop: CancellationToken,
    ) {
        let mut handles = Vec::new();
        let interval = Duration::from_secs_f64(tasks as f64 / rate.max(0.1));
        for task in 0..tasks {
            let workload = self.clone();
            let stop = stop.clone();
            let mut rng = StdRng::seed_from_u64(seed ^ (0x9e37_79b9 * (task as u64 + 1)));
            handles.push(tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let started = Instant::now();
                    workload.one_command(&mut rng).await;
                    let jitter = interval.mul_f64(rng.gen_range(0.5..1.5));
                    tokio::time::sleep(jitter.saturating_sub(started.elapsed())).await;
                }
            }));
        }
        for handle in handles {
            let _ = handle.await;
        }
    }

    /// What the workload did so far.
    pub fn stats(&self) -> WorkloadStats {
        let stats = self.stats.lock().expect("stats lock");
        WorkloadStats {
            commands: stats.commands.clone(),
            answers: stats.answers.clone(),
            retries: stats.retries,
            unanswered: stats.unanswered,
        }
    }

    /// Flushes the answers file.
    pub fn finish(&self) -> std::io::Result<()> {
        self.answers.lock().expect("answers lock").flush()
    }

    async fn one_command(&self, rng: &mut StdRng) {
        let roll = rng.gen_range(0..100);
        let (kind, request) = if roll < 62 {
            ("place", self.place(rng))
        } else if roll < 72 {
            match self.cancel(rng) {
                Some(request) => ("cancel", request),
                None => ("place", self.place(rng)),
            }
        } else if roll < 80 {
            ("restock", self.restock(rng))
        } else {
            let sent = self.sent.lock().expect("sent lock");
            if sent.is_empty() {
                drop(sent);
                ("place", self.place(rng))
            } else {
                ("duplicate", sent[rng.gen_range(0..sent.len())].clone())
            }
        };
        *self
            .stats
            .lock()
            .expect("stats lock")
            .commands
            .entry(kind.to_owned())
            .or_default() += 1;
        // A command that hits an outage keeps retrying well past the run's end.
        let answer = self
            .send(&request, Instant::now() + Duration::from_secs(90))
            .await;
        if kind != "duplicate" {
            self.sent.lock().expect("sent lock").push(request.clone());
        }
        match answer {
            Some((status, body)) => {
                *self
                    .stats
                    .lock()
                    .expect("stats lock")
                    .answers
                    .entry(status)
                    .or_default() += 1;
                if status == 201 && request.path == "/orders" {
                    if let Some(id) = body["order_id"].as_str().and_then(|s| s.parse().ok()) {
                        let mut orders = self.orders.lock().expect("orders lock");
                        if !orders.contains(&id) {
                            orders.push(id);
                        }
                    }
                }
            }
            None => self.stats.lock().expect("stats lock").unanswered += 1,
        }
    }

    fn place(&self, rng: &mut StdRng) -> Request {
        let line_count = rng.gen_range(1..=3.min(self.products.len()));
        let mut products = self.products.clone();
        let mut lines = Vec::new();
        for _ in 0..line_count {
            let product = products.remove(rng.gen_range(0..products.len()));
            lines.push(json!({ "product_id": product, "quantity": rng.gen_range(1..=4) }));
        }
        let mut pick = rng.gen_range(0..100);
        let token = TOKENS
            .iter()
            .find(|(_, weight)| {
                if pick < *weight {
                    true
                } else {
                    pick -= weight;
                    false
                }
            })
            .map_or("tok_ok", |(token, _)| token);
        Request {
            key: Uuid::new_v4().to_string(),
            path: "/orders".into(),
            body: json!({
                "user_id": format!("user-{}", rng.gen_range(0..20)),
                "lines": lines,
                "payment": { "token": format!("{token}_{}", rng.gen_range(0..1_000_000)) },
            }),
        }
    }

    fn cancel(&self, rng: &mut StdRng) -> Option<Request> {
        let orders = self.orders.lock().expect("orders lock");
        if orders.is_empty() {
            return None;
        }
        // Recent orders, which are still open more often than not.
        let from = orders.len().saturating_sub(20);
        let order = orders[rng.gen_range(from..orders.len())];
        Some(Request {
            key: Uuid::new_v4().to_string(),
            path: format!("/orders/{order}/cancel"),
            body: json!({}),
        })
    }

    fn restock(&self, rng: &mut StdRng) -> Request {
        let product = self.products[rng.gen_range(0..self.products.len())];
        Request {
            key: Uuid::new_v4().to_string(),
            path: format!("/products/{product}/restock"),
            body: json!({ "quantity": rng.gen_range(5..=40) }),
        }
    }

    /// Sends `request` (alternating replicas) until it is answered or
    /// `deadline` passes; every answer received is recorded.
    async fn send(&self, request: &Request, deadline: Instant) -> Option<(u16, Value)> {
        let mut pause = Duration::from_millis(100);
        loop {
            let api = &self.apis
                [self.next_api.fetch_add(1, Ordering::Relaxed) as usize % self.apis.len()];
            let sent = self
                .client
                .post(format!("{api}{}", request.path))
                .header("Idempotency-Key", &request.key)
                .json(&request.body)
                .send()
                .await;
            if let Ok(response) = sent {
                let status = response.status().as_u16();
                if let Ok(body) = response.json::<Value>().await {
                    self.record(request, status, &body);
                    let in_flight = status == 409
                        && body["detail"]
                            .as_str()
                            .is_some_and(|d| d.contains("in flight") || d.contains("in progress"));
                    if status < 500 && !in_flight {
                        return Some((status, body));
                    }
                }
            }
            self.stats.lock().expect("stats lock").retries += 1;
            if Instant::now() + pause > deadline {
                return None;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    fn record(&self, request: &Request, status: u16, body: &Value) {
        let line = json!({
            "key": request.key,
            "method": "POST",
            "path": request.path,
            "status": status,
            "body": body,
        });
        let mut answers = self.answers.lock().expect("answers lock");
        let _ = writeln!(answers, "{line}");
    }
}
