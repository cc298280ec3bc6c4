//! The launcher's Prometheus metrics, all under the `s3_tcpdump_launcher_`
//! prefix, and the port that serves them.
//!
//! Routes (bounded as the uploader's admin port is: `admin_http`):
//! - `GET /metrics` — Prometheus text exposition.
//! - `GET /healthz` — the liveness verdict `launcher --probe` prints (the
//!   spool's heartbeat): 200 while tcpdump writes, 503 once it has stalled.
//!
//! The answers name no file, address or credential: with `hostNetwork`
//! anything that reaches the node may ask.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use spool::SpoolLayout;
use tokio::net::TcpListener;

use crate::stats::Increase;

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub packets_captured: Counter,
    pub packets_received: Counter,
    pub packets_dropped_by_kernel: Counter,
    pub packets_dropped_by_interface: Counter,
    pub stats_reports: Counter,
    pub tcpdump_start_time: Gauge,
    pub captures_handed_over: Counter,
    pub handed_over_bytes: Counter,
    pub last_handover_time: Gauge,
    pub stalled: Gauge,
    pub budget_dropped_captures: Counter,
    pub budget_dropped_bytes: Counter,
    pub budget_dropped_non_capture_files: Counter,
    pub quarantined_files: Counter,
    pub metrics_connections_evicted: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("s3_tcpdump_launcher");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let packets_captured = counter(
            &mut registry,
            "packets_captured",
            "Packets tcpdump wrote to capture files (its \"packets captured\", asked every --stats-interval-ms with SIGUSR1)",
        );
        let packets_received = counter(
            &mut registry,
            "packets_received",
            "Packets that reached tcpdump's filter (libpcap's ps_recv; on Linux, drops included)",
        );
        let packets_dropped_by_kernel = counter(
            &mut registry,
            "packets_dropped_by_kernel",
            "Packets the kernel dropped because tcpdump's buffer was full (libpcap's ps_drop): missing from the captures; raise --buffer-kib",
        );
        let packets_dropped_by_interface = counter(
            &mut registry,
            "packets_dropped_by_interface",
            "Packets the interface dropped (libpcap's ps_ifdrop; 0 when capturing on `any`)",
        );
        let stats_reports = counter(
            &mut registry,
            "tcpdump_stats_reports",
            "Answers of tcpdump to SIGUSR1 read (and its summary at exit); the packet counters are as fresh as the last",
        );
        let tcpdump_start_time = Gauge::default();
        // Named like process_start_time_seconds. The launcher exits with
        // tcpdump and Kubernetes restarts the container, so a restart
        // counter in the process would always read 0: changes() over this
        // gauge counts restarts across processes.
        registry.register(
            "tcpdump_start_time_seconds",
            "When tcpdump was started, Unix time in seconds; changes() over it counts tcpdump's restarts (the container's)",
            tcpdump_start_time.clone(),
        );
        let captures_handed_over = counter(
            &mut registry,
            "captures_handed_over",
            "Captures moved from active/ to ready/ for the uploader",
        );
        let handed_over_bytes = Counter::default();
        registry.register_with_unit(
            "handed_over",
            "Bytes of captures moved from active/ to ready/",
            Unit::Bytes,
            handed_over_bytes.clone(),
        );
        let last_handover_time = Gauge::default();
        // A time, not an age: it needs no updating between scrapes, and
        // time() - it gives the age in any query.
        registry.register(
            "last_handover_timestamp_seconds",
            "When the last capture was handed over, Unix time in seconds; the launcher's start until one is",
            last_handover_time.clone(),
        );
        let stalled = Gauge::default();
        registry.register(
            "stalled",
            "1 while tcpdump is stalled, else 0: per-packet mode, it has written nothing for 10 s although the launcher's tick reaches it; buffered mode, it has not answered SIGUSR1 with packets taken (for 10 s, or twice --stats-interval-ms), or captures but has closed no file for a rotation period and 10 s (the liveness probe fails after 20 s)",
            stalled.clone(),
        );
        let budget_dropped_captures = counter(
            &mut registry,
            "budget_dropped_captures",
            "Captures the launcher deleted unsent because the spool was 10 % over --max-spool-mb (the uploader was not draining it)",
        );
        let budget_dropped_bytes = Counter::default();
        registry.register_with_unit(
            "budget_dropped",
            "Bytes of captures the launcher deleted unsent to keep the spool budget",
            Unit::Bytes,
            budget_dropped_bytes.clone(),
        );
        let budget_dropped_non_capture_files = counter(
            &mut registry,
            "budget_dropped_non_capture_files",
            "Files that are not captures the launcher deleted to keep the spool budget, before any capture",
        );
        let quarantined_files = counter(
            &mut registry,
            "quarantined_files",
            "Files of active/ that were not valid captures, moved to quarantine/ instead of ready/",
        );
        let metrics_connections_evicted = counter(
            &mut registry,
            "metrics_connections_evicted",
            "Metrics port connections closed before their request head arrived, to make room for a new one (all 64 slots taken)",
        );
        let metrics = Self {
            registry,
            packets_captured,
            packets_received,
            packets_dropped_by_kernel,
            packets_dropped_by_interface,
            stats_reports,
            tcpdump_start_time,
            captures_handed_over,
            handed_over_bytes,
            last_handover_time,
            stalled,
            budget_dropped_captures,
            budget_dropped_bytes,
            budget_dropped_non_capture_files,
            quarantined_files,
            metrics_connections_evicted,
        };
        metrics.last_handover_time.set(unix_now());
        metrics
    }

    /// Adds what tcpdump counted since its last report.
    pub fn counted(&self, increase: Increase) {
        self.stats_reports.inc();
        self.packets_captured.inc_by(increase.captured);
        self.packets_received.inc_by(increase.received);
        self.packets_dropped_by_kernel
            .inc_by(increase.dropped_by_kernel);
        self.packets_dropped_by_interface
            .inc_by(increase.dropped_by_interface);
    }

    /// One capture moved to `ready/`.
    pub fn handed_over(&self, bytes: u64) {
        self.captures_handed_over.inc();
        self.handed_over_bytes.inc_by(bytes);
        self.last_handover_time.set(unix_now());
    }

    pub fn tcpdump_started(&self) {
        self.tcpdump_start_time.set(unix_now());
    }

    /// What `/metrics` answers, as text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        admin_http::encode(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[derive(Debug, Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    spool: SpoolLayout,
}

/// Binds the metrics address (so a taken port fails at start, before
/// tcpdump does) and returns the server future.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    spool: SpoolLayout,
) -> std::io::Result<impl Future<Output = ()>> {
    let listener = TcpListener::bind(addr).await?;
    let evicted = metrics.metrics_connections_evicted.clone();
    let app = Router::new()
        .route("/metrics", get(metrics_route))
        .route("/healthz", get(healthz))
        .with_state(AppState { metrics, spool });
    Ok(admin_http::serve(
        listener,
        app,
        admin_http::Limits::ADMIN,
        evicted,
    ))
}

async fn metrics_route(State(state): State<AppState>) -> impl IntoResponse {
    admin_http::metrics_response(&state.metrics.registry)
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match crate::stall::probe(&state.spool) {
        Ok(age) => (
            StatusCode::OK,
            format!(
                "alive: tcpdump was last seen capturing {} s ago\n",
                age.as_secs()
            ),
        ),
        // The verdict names the heartbeat's path: a path inside the
        // container, not a secret, but the port needs no more than this.
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "stalled: tcpdump has not written for a while (details in the launcher's log)\n"
                .to_owned(),
        ),
    }
}
