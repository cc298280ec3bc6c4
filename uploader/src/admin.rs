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
//! the node. So it answers with kinds only (`not ready: access_denied`),
//! never the store's own words: newer S3 `AccessDenied` messages name the
//! account and the role's ARN. The details go to the log.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

use crate::errors::{AskError, UploadError};
use crate::metrics::Metrics;
use crate::retry::FailureKind;

/// What `/readyz` says before the first probe has answered.
const STARTING: &str = "starting";

/// Where a current problem was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Probe,
    Upload,
}

/// Readiness: a latch that is set by a passing probe or upload and cleared
/// by a permanent failure. Logs each change once.
#[derive(Debug)]
pub struct Health {
    bucket: String,
    problem: Mutex<Option<Problem>>,
}

#[derive(Debug)]
struct Problem {
    source: Source,
    kind: FailureKind,
    /// Whether it was logged (the initial "not probed yet" is not).
    announced: bool,
}

impl Health {
    /// Starts not ready: the probe has not run yet.
    pub fn new(bucket: &str) -> Self {
        Self {
            bucket: bucket.to_owned(),
            problem: Mutex::new(Some(Problem {
                source: Source::Probe,
                kind: FailureKind::Connection,
                announced: false,
            })),
        }
    }

    /// Something that needs a person went wrong; logged when it differs
    /// from the problem already known.
    pub fn failed(&self, source: Source, key: &str, error: &UploadError) {
        let mut problem = self.problem.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = problem
            .as_ref()
            .is_none_or(|p| p.kind != error.kind || !p.announced);
        if changed {
            tracing::error!(
                bucket = %self.bucket,
                key,
                kind = %error.kind,
                error = %error.detail,
                hint = error.kind.hint(),
                "uploads are failing; captures are kept and retried slowly"
            );
        }
        *problem = Some(Problem {
            source,
            kind: error.kind,
            announced: true,
        });
    }

    /// It works (again). A probe success does not clear a problem seen by
    /// an upload: the probe key may be allowed where capture keys are not.
    pub fn succeeded(&self, source: Source) {
        let mut problem = self.problem.lock().unwrap_or_else(PoisonError::into_inner);
        match &*problem {
            Some(p) if p.source == Source::Upload && source == Source::Probe => {}
            Some(p) => {
                if p.announced {
                    tracing::info!(bucket = %self.bucket, "uploads work again");
                }
                *problem = None;
            }
            None => {}
        }
    }

    pub fn is_ready(&self) -> bool {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// Why not ready, in words safe to show anyone who reaches the port:
    /// the failure's kind, as in the metrics' `kind` label.
    fn reason(&self) -> Option<&'static str> {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|p| {
                if p.announced {
                    p.kind.as_str()
                } else {
                    STARTING
                }
            })
    }
}

#[derive(Debug, Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Binds the admin address (so a taken port fails at start) and returns the
/// server future.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<impl Future<Output = std::io::Result<()>>> {
    let listener = TcpListener::bind(addr).await?;
    let app = Router::new()
        .route("/metrics", get(metrics_route))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health });
    Ok(async move { axum::serve(listener, app).await })
}

async fn metrics_route(State(state): State<AppState>) -> impl IntoResponse {
    match state.metrics.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
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
