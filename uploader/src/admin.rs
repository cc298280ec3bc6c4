//! The admin HTTP server, for Prometheus and the kubelet's probes, and
//! [`ask`], its client for exec probes (`uploader probe ready|live`).
//!
//! Routes:
//! - `GET /metrics` — Prometheus text exposition (see `metrics.rs`).
//! - `GET /healthz` — liveness: 200 while the process serves requests.
//!   Never tied to S3: restarting the uploader does not fix an outage.
//! - `GET /readyz` — readiness: 200 when the bucket probe passed and no
//!   permanent failure (access denied, no such bucket, bad credentials) is
//!   current; 503 with the failure's kind otherwise.
//!
//! With `hostNetwork` the port is open on the node, to anything that reaches
//! the node: connections, request heads and their read time are bounded
//! (`admin_http::bounded_server`), so slow or oversized requests cannot grow the
//! uploader's memory or lock the probes out. So it answers with kinds only (`not ready: access_denied`),
//! never the store's own words: newer S3 `AccessDenied` messages name the
//! account and the role's ARN. The details go to the log.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

use crate::errors::AskError;
use crate::health::Health;
use crate::metrics::Metrics;
use admin_http::Limits;

#[derive(Debug, Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Binds the admin address (so a taken port fails at start) and returns the
/// server future, bounded as [`Limits::ADMIN`] says.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<impl Future<Output = ()>> {
    let listener = TcpListener::bind(addr).await?;
    let evicted = metrics.admin_connections_evicted.clone();
    let app = Router::new()
        .route("/metrics", get(metrics_route))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health });
    Ok(admin_http::serve(listener, app, Limits::ADMIN, evicted))
}

async fn metrics_route(State(state): State<AppState>) -> impl IntoResponse {
    admin_http::metrics_response(&state.metrics.registry)
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.health.reason() {
        None => (StatusCode::OK, "ready\n".to_owned()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason} (details in the uploader's log)\n"),
        ),
    }
}

/// The admin routes an exec probe can ask about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Route {
    /// `/readyz`: the bucket answers and uploads work.
    Ready,
    /// `/healthz`: the process serves requests.
    Live,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::Ready => "/readyz",
            Route::Live => "/healthz",
        }
    }
}

/// How long an exec probe waits for the answer (below the kubelet's
/// `timeoutSeconds`, so the probe, not the kubelet, reports the reason).
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks the admin server at `addr` (an unspecified address means this
/// host's loopback) about `route`: its answer when it is 200, an error with
/// the status and the answer, or with why nothing answered, otherwise.
pub async fn ask(addr: SocketAddr, route: Route) -> Result<String, AskError> {
    let addr = loopback_if_unspecified(addr);
    let uri = format!("http://{addr}{}", route.path());
    let request = http::Request::get(&uri)
        .body(SdkBody::empty())
        .map_err(|e| AskError::Unreachable {
            uri: uri.clone(),
            reason: e.to_string(),
        })?;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build(HttpConnector::new());
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = ByteStream::new(SdkBody::from_body_1_x(response.into_body()))
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .into_bytes();
        Ok::<_, String>((status, String::from_utf8_lossy(&body).trim().to_owned()))
    };
    let (status, body) = tokio::time::timeout(ASK_TIMEOUT, exchange)
        .await
        .map_err(|_| AskError::Unreachable {
            uri: uri.clone(),
            reason: format!("no answer within {ASK_TIMEOUT:?}"),
        })?
        .map_err(|reason| AskError::Unreachable {
            uri: uri.clone(),
            reason,
        })?;
    if status == StatusCode::OK {
        Ok(body)
    } else {
        Err(AskError::Answered {
            uri,
            status: status.as_u16(),
            body,
        })
    }
}

fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}
