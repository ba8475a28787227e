//! The whole order flow (command API, relay, projector, saga worker,
//! payment-gateway simulator, all in-process): placed → CONFIRMED latency
//! at a fixed open-loop arrival rate, counted from each order's scheduled
//! send time until the order read model shows it CONFIRMED; then the highest
//! settled rate in a closed loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Suite;
use crate::env::{BenchDb, BenchKafka};
use crate::http;
use crate::load::{closed_loop, open_loop, Measured};
use crate::results::Value;
use crate::system::Services;

/// Products the orders are spread over.
const PRODUCTS: usize = 20;
/// Longest an order may take to settle before the stage fails.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs this stage and records its figures.
pub async fn run(suite: &mut Suite) -> anyhow::Result<()> {
    let db = BenchDb::create("saga", 16).await?;
    let kafka = BenchKafka::create().await?;
    let mut services = Services::new();
    let measured = measure(suite, &db, &kafka, &mut services).await;
    services.stop().await;
    kafka.remove().await?;
    db.remove().await?;
    let ((open, open_unsettled), (closed, closed_unsettled)) = measured?;
    let (rate, clients) = (suite.sizes.rate, suite.sizes.clients * 2);
    let results = &mut suite.results;
    let name = format!(
        "placed → CONFIRMED at {rate} orders/s open loop (achieved {:.0}/s)",
        open.rate()
    );
    results.add("saga", name, Value::Latency(open.latencies.percentiles()));
    let name = format!("open loop: orders not CONFIRMED within {SETTLE_TIMEOUT:?}");
    results.add("saga", name, Value::number(open_unsettled as f64, "orders"));
    let settled = closed
        .latencies
        .len()
        .saturating_sub(closed_unsettled as usize);
    let name = format!("orders placed and settled, closed loop ({clients} clients)");
    let settled_rate = crate::load::rate(settled, closed.elapsed);
    results.add("saga", name, Value::rate(settled_rate, "orders/s"));
    results.add(
        "saga",
        "placed → CONFIRMED, closed loop",
        Value::Latency(closed.latencies.percentiles()),
    );
    Ok(())
}

async fn measure(
    suite: &Suite,
    db: &BenchDb,
    kafka: &BenchKafka,
    services: &mut Services,
) -> anyhow::Result<((Measured, u64), (Measured, u64))> {
    let command_url = services.command_api(db.pool(10).await?).await?;
    services.relay(db.pool(2).await?, &kafka.config)?;
    services.projector(
        db,
        &kafka.config,
        &format!("{}projector", kafka.config.topic_prefix),
    )?;
    services.saga(db, &kafka.config).await?;
    let client = http::client(suite.sizes.clients * 2)?;
    let mut products = Vec::new();
    for n in 0..PRODUCTS {
        products
            .push(http::register_product(&client, &command_url, &format!("Product {n}")).await?);
    }
    let stop = CancellationToken::new();
    let watcher = Watcher::start(db.pool.clone(), stop.clone());
    let flow = Arc::new(Flow {
        client,
        command_url,
        products,
        watcher,
        unsettled: AtomicU64::new(0),
    });
    // Warm up: consumer groups joined, connections open.
    for n in 0..5 {
        flow.settle(n).await.context("warm-up order")?;
    }
    let f = flow.clone();
    let open = open_loop(
        suite.sizes.rate,
        suite.sizes.duration,
        SETTLE_TIMEOUT + Duration::from_secs(30),
        move |n| {
            let flow = f.clone();
            async move { flow.settle(n).await }
        },
    )
    .await;
    let open_unsettled = flow.unsettled.swap(0, Ordering::Relaxed);
    let f = flow.clone();
    let closed = match open {
        Ok(_) => Some(
            closed_loop(
                suite.sizes.clients * 2,
                suite.sizes.duration,
                move |worker, n| {
                    let flow = f.clone();
                    async move { flow.settle(worker as u64 * 1_000_003 + n + 1_000_000).await }
                },
            )
            .await,
        ),
        Err(_) => None,
    };
    stop.cancel();
    let open = (open?, open_unsettled);
    let closed = closed.expect("ran after the open loop")?;
    Ok((open, (closed, flow.unsettled.load(Ordering::Relaxed))))
}

/// What placing and settling one order needs.
struct Flow {
    client: reqwest::Client,
    command_url: String,
    products: Vec<String>,
    watcher: Arc<Watcher>,
    /// Orders not settled within [`SETTLE_TIMEOUT`].
    unsettled: AtomicU64,
}

impl Flow {
    /// Places order `n` and waits until its read model is CONFIRMED. One
    /// that is not settled within [`SETTLE_TIMEOUT`] is counted (an overload,
    /// not an error: the suite asserts nothing about speed); one that ends in
    /// another status is an error.
    async fn settle(&self, n: u64) -> anyhow::Result<()> {
        let product = &self.products[n as usize % self.products.len()];
        let order = http::place_order(&self.client, &self.command_url, n, product).await?;
        let settled = self.watcher.wait(order.parse()?);
        match tokio::time::timeout(SETTLE_TIMEOUT, settled).await {
            Ok(status) => {
                let status = status?;
                anyhow::ensure!(status == "CONFIRMED", "order {order} ended {status}");
            }
            Err(_) => {
                self.unsettled.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// Watches `read.orders` for orders reaching a terminal status: one query
/// every few milliseconds for all waiting orders (instead of each client
/// polling the query API, which would load the machine under test).
struct Watcher {
    pending: Mutex<HashMap<Uuid, oneshot::Sender<String>>>,
}

impl Watcher {
    fn start(pool: PgPool, stop: CancellationToken) -> Arc<Self> {
        let watcher = Arc::new(Self {
            pending: Mutex::default(),
        });
        let w = watcher.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Err(error) = w.poll(&pool).await {
                    eprintln!("  order watcher: {error:#}");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        watcher
    }

    fn wait(&self, order: Uuid) -> impl std::future::Future<Output = anyhow::Result<String>> {
        let (sender, receiver) = oneshot::channel();
        self.pending
            .lock()
            .expect("watcher lock")
            .insert(order, sender);
        async move { receiver.await.context("the order watcher stopped") }
    }

    async fn poll(&self, pool: &PgPool) -> anyhow::Result<()> {
        let ids: Vec<Uuid> = self
            .pending
            .lock()
            .expect("watcher lock")
            .keys()
            .copied()
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let settled: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT order_id, status FROM read.orders
             WHERE order_id = ANY($1) AND status IN ('CONFIRMED', 'REJECTED', 'CANCELLED')",
        )
        .bind(&ids)
        .fetch_all(pool)
        .await?;
        let mut pending = self.pending.lock().expect("watcher lock");
        for (order, status) in settled {
            if let Some(sender) = pending.remove(&order) {
                let _ = sender.send(status);
            }
        }
        Ok(())
    }
}
