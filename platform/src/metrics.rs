//! Prometheus metrics, the same for every process: one recorder per process
//! (installed on first use), `GET /metrics` in the exposition format, HTTP
//! request metrics by route, periodic samplers (connection pool, queries) and
//! Kafka consumer lag from librdkafka's statistics.
//!
//! The HTTP APIs serve `/metrics` on their own port (see
//! [`crate::http::with_common_layers`]); the workers (relay, projector, saga)
//! serve it with their health probes on a small admin port
//! ([`AdminConfig`], [`serve_admin`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rdkafka::Statistics;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::ReadinessCheck;

/// Histogram buckets of every `*_seconds` metric: 1 ms to 10 s.
const SECONDS_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Histogram buckets of every `*_size` metric (items per batch).
const SIZE_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// The media type of the text exposition format.
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The process's metrics handle; installs the global recorder on first call.
///
/// If another recorder was installed first (a test harness, say), metrics
/// still render, but only those recorded through this handle's recorder,
/// i.e. none: the failure is logged once.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), &SIZE_BUCKETS))
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        describe();
        handle
    })
}

/// Installs the process's recorder now (metrics recorded before it is
/// installed are lost). Every process calls it at start, through
/// [`crate::telemetry::init`]; idempotent.
pub fn install() {
    handle();
}

/// The exposition of every metric of this process.
pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}

/// `GET /metrics`.
pub fn router() -> Router {
    install();
    Router::new().route("/metrics", get(metrics_response))
}

async fn metrics_response() -> Response {
    ([(header::CONTENT_TYPE, EXPOSITION_CONTENT_TYPE)], render()).into_response()
}

/// Middleware: counts every request and records its latency, labelled by
/// method, route template (`/orders/{order_id}`, never the raw path, so
/// ids do not explode the label space; `unmatched` for unknown routes) and
/// status.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Where a worker process serves `/metrics` and its health probes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AdminConfig {
    /// Address of the admin endpoint (`/metrics`, `/health/live`,
    /// `/health/ready`); each worker has its own default port (relay 9101,
    /// projector 9102, saga worker 9103, on 127.0.0.1).
    #[arg(long = "admin-bind", env = "ADMIN_BIND")]
    pub admin_bind: Option<SocketAddr>,
}

impl AdminConfig {
    /// The configured address, or `default`.
    pub fn address(&self, default: SocketAddr) -> SocketAddr {
        self.admin_bind.unwrap_or(default)
    }
}

/// The relay's default admin address.
pub const RELAY_ADMIN: SocketAddr = admin_port(9101);
/// The projector's default admin address.
pub const PROJECTOR_ADMIN: SocketAddr = admin_port(9102);
/// The saga worker's default admin address.
pub const SAGA_ADMIN: SocketAddr = admin_port(9103);

const fn admin_port(port: u16) -> SocketAddr {
    SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        port,
    ))
}

/// Serves `/metrics` and the health probes on `bind` until `shutdown`, in
/// the background. Fails only if the address cannot be bound.
pub async fn serve_admin(
    bind: SocketAddr,
    readiness: ReadinessCheck,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(bind).await?;
    let address = listener.local_addr()?;
    let app = crate::http::with_common_layers(crate::http::health_router(readiness));
    tokio::spawn(async move {
        if let Err(error) = crate::http::serve(listener, app, shutdown).await {
            tracing::error!(%error, "admin endpoint failed");
        }
    });
    Ok(address)
}

/// What every worker does at start: serves `/metrics` and its health probes
/// (ready when `pool` answers) on `config`'s address or `default`, and
/// samples `pool` as `pool_name`. Fails if the address cannot be bound.
pub async fn start_worker_admin(
    config: &AdminConfig,
    default: SocketAddr,
    pool: &PgPool,
    pool_name: &'static str,
    shutdown: &CancellationToken,
) -> anyhow::Result<SocketAddr> {
    use anyhow::Context as _;
    let bind = config.address(default);
    let readiness = crate::http::database_readiness(pool.clone());
    let address = serve_admin(bind, readiness, shutdown.clone())
        .await
        .with_context(|| format!("binding the admin endpoint {bind}"))?;
    tracing::info!(%address, "metrics at /metrics");
    spawn_pool_sampler(pool.clone(), pool_name, shutdown.clone());
    Ok(address)
}

/// Runs `sample` every `every` until `shutdown`, logging (not propagating)
/// its failures: a sampler that cannot reach its source leaves the last
/// values in place.
pub fn spawn_sampler<F, Fut>(
    name: &'static str,
    every: Duration,
    shutdown: CancellationToken,
    sample: F,
) where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if let Err(error) = sample().await {
                tracing::debug!(sampler = name, %error, "metrics sample failed");
            }
        }
    });
}

/// Samples the connections of `pool` every few seconds:
/// `db_pool_connections{pool, state="in_use"|"idle"}` and
/// `db_pool_max_connections{pool}`.
pub fn spawn_pool_sampler(pool: PgPool, name: &'static str, shutdown: CancellationToken) {
    let max = pool.options().get_max_connections();
    metrics::gauge!("db_pool_max_connections", "pool" => name).set(f64::from(max));
    spawn_sampler("db_pool", Duration::from_secs(2), shutdown, move || {
        let pool = pool.clone();
        async move {
            let size = pool.size();
            let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(size);
            metrics::gauge!("db_pool_connections", "pool" => name, "state" => "idle")
                .set(f64::from(idle));
            metrics::gauge!("db_pool_connections", "pool" => name, "state" => "in_use")
                .set(f64::from(size - idle));
            Ok(())
        }
    });
}

/// How often consumers report statistics (and so lag), in ms.
pub const CONSUMER_STATISTICS_INTERVAL_MS: &str = "5000";

/// Records `kafka_consumer_lag{group, topic, partition}` (messages between
/// the group's committed or stored offset and the partition's end) for each
/// partition assigned to this consumer, from librdkafka's statistics
/// (enabled by `statistics.interval.ms`; call from `ClientContext::stats`).
pub fn record_consumer_lag(group: &str, statistics: &Statistics) {
    for (topic, details) in &statistics.topics {
        for partition in details.partitions.values() {
            // -1 is librdkafka's internal unassigned partition.
            if partition.partition < 0 || !partition.desired {
                continue;
            }
            // librdkafka reports -1 until the group has committed an offset
            // on the partition; then everything retained is still to read
            // (the consumers start at the earliest offset).
            let lag = if partition.consumer_lag >= 0 {
                partition.consumer_lag
            } else if partition.lo_offset >= 0 && partition.hi_offset >= partition.lo_offset {
                partition.hi_offset - partition.lo_offset
            } else {
                continue;
            };
            metrics::gauge!(
                "kafka_consumer_lag",
                "group" => group.to_owned(),
                "topic" => topic.clone(),
                "partition" => partition.partition.to_string()
            )
            .set(lag as f64);
        }
    }
}

/// Help texts of the metrics every process may record.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method, route and status."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time from request to response, by method, route and status."
    );
    describe_gauge!(
        "db_pool_connections",
        "Pooled database connections, by pool and state."
    );
    describe_gauge!(
        "db_pool_max_connections",
        "Largest size of each database pool."
    );
    describe_gauge!(
        "kafka_consumer_lag",
        "Messages not yet consumed, by consumer group, topic and partition."
    );
}
