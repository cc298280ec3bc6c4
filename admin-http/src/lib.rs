//! What the launcher's metrics port and the uploader's admin port share:
//! the [`bounded_server`] (connections, request heads and their read time
//! bounded whatever clients do, since with `hostNetwork` anything that
//! reaches the node can connect) and the `/metrics` answer.

pub mod bounded_server;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;

pub use bounded_server::{Limits, serve};

/// The OpenMetrics content type prometheus-client's text encoder writes.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry in the OpenMetrics text format, as `/metrics` serves it.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, registry)?;
    Ok(body)
}

/// `GET /metrics`: the registry in the OpenMetrics text format.
pub fn metrics_response(registry: &Registry) -> Response {
    match encode(registry) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
