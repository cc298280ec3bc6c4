//! The admin HTTP server, for Prometheus and the kubelet's probes.
//!
//! Routes:
//! - `GET /metrics` — Prometheus text exposition (see `metrics.rs`).
//! - `GET /healthz` — liveness: 200 while the process serves requests.
//!   Never tied to S3: restarting the uploader does not fix an outage.
//! - `GET /readyz` — readiness: 200 when the bucket probe passed and no
//!   permanent failure (access denied, no such bucket, bad credentials) is
//!   current; 503 with the reason otherwise.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::errors::UploadError;
use crate::metrics::Metrics;
use crate::retry::FailureKind;

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
    detail: String,
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
                detail: "bucket not probed yet".to_owned(),
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
            detail: error.detail.clone(),
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

    fn reason(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|p| format!("{}: {}; {}", p.kind, p.detail, p.kind.hint()))
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
            format!("not ready: {reason}\n"),
        ),
    }
}
