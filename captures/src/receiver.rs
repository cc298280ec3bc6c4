//! `captures receive-alerts`: Alertmanager's webhook receiver for the
//! flight recorder. Each firing alert becomes one pin in the bucket (see
//! [`crate::pin`]), which every uploader in pinned mode reads.
//!
//! - The payload is Alertmanager's documented webhook (`version` "4",
//!   `alerts[]` with `status`, `labels`, `annotations`, `startsAt`,
//!   `endsAt`, `generatorURL`, `fingerprint`); [`pins_for`] turns it into
//!   pins: the window is `startsAt - before … startsAt + after`; the nodes
//!   are the alert's `node` label, else every node (a `pod` label is kept
//!   in the reason: which node ran it is the identity journal's question,
//!   and pinning every node never misses it).
//! - A pin's id comes from the alert's fingerprint and `startsAt`, so
//!   Alertmanager's repeats (every `repeat_interval`, and from each replica
//!   of a highly available Alertmanager) write the same object again, not a
//!   second pin; a restarted receiver makes the same ids.
//! - The caller authenticates with a bearer token (Alertmanager's
//!   `http_config.authorization.credentials_file`), compared in constant
//!   time; the receiver refuses to start without one.
//! - The server is `admin_http`'s bounded one (connections, request heads,
//!   their read time), and a body is at most [`MAX_BODY_BYTES`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bucket::pins::{Pin, PinSelection};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;

use crate::pin::{self, PinRequest};

/// The largest webhook body read (Alertmanager's for a group of a few
/// hundred alerts is well under).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The most alerts of one webhook turned into pins; more are refused with
/// 413, naming the setting (`max_alerts` in Alertmanager's webhook_config).
pub const MAX_ALERTS: usize = 500;

/// The server's bounds: the admin port's, with room for a webhook's
/// headers.
pub const LIMITS: admin_http::Limits = admin_http::Limits {
    connections: 64,
    header_read_timeout: std::time::Duration::from_secs(5),
    max_head_bytes: 16 * 1024,
    max_headers: 64,
    connection_lifetime: std::time::Duration::from_secs(30),
};

/// The route Alertmanager posts to.
pub const ROUTE: &str = "/alerts";

/// Alertmanager's webhook payload (version 4), the fields used.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub version: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    pub alerts: Vec<Alert>,
}

/// One alert of a webhook.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    #[serde(default)]
    pub fingerprint: String,
}

/// How alerts become pins.
#[derive(Debug, Clone)]
pub struct PinPolicy {
    /// Pinned before the alert started.
    pub before: TimeDelta,
    /// Pinned after it started.
    pub after: TimeDelta,
    pub ttl: TimeDelta,
}

/// What the receiver needs.
#[derive(Debug)]
pub struct Receiver {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    pub prefix: String,
    pub policy: PinPolicy,
    /// The bearer token callers must present.
    pub token: Vec<u8>,
}

/// A webhook that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the body is not Alertmanager's webhook JSON: {0}")]
    Unreadable(#[from] serde_json::Error),
    #[error(
        "webhook version {0:?}: this receiver reads version \"4\" (Alertmanager 0.x's only one)"
    )]
    Version(String),
    #[error(
        "{0} alerts in one webhook, more than {MAX_ALERTS}: set max_alerts: {MAX_ALERTS} in the webhook_config"
    )]
    TooMany(usize),
}

/// The pins a webhook asks for: one per firing alert (resolved alerts
/// pinned their window when they fired).
pub fn pins_for(
    body: &[u8],
    policy: &PinPolicy,
    now: DateTime<Utc>,
) -> Result<Vec<Pin>, WebhookError> {
    let webhook: Webhook = serde_json::from_slice(body)?;
    if webhook.version != "4" {
        return Err(WebhookError::Version(webhook.version));
    }
    if webhook.alerts.len() > MAX_ALERTS {
        return Err(WebhookError::TooMany(webhook.alerts.len()));
    }
    let mut pins = Vec::new();
    for alert in webhook.alerts.iter().filter(|a| a.status == "firing") {
        let name = alert
            .labels
            .get("alertname")
            .map_or("alert", String::as_str);
        let pod = match (alert.labels.get("namespace"), alert.labels.get("pod")) {
            (Some(ns), Some(pod)) => Some(format!("{ns}/{pod}")),
            _ => None,
        };
        let selection = match alert.labels.get("node").filter(|n| !n.is_empty()) {
            Some(node) => PinSelection::Nodes {
                nodes: vec![node.clone()],
                pod: pod.clone(),
            },
            None => PinSelection::All,
        };
        let summary = alert
            .annotations
            .get("summary")
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        let on = pod.map(|p| format!(" on pod {p}")).unwrap_or_default();
        let reason: String = format!("alert {name}{on}{summary}")
            .chars()
            .take(bucket::pins::MAX_REASON_CHARS)
            .collect();
        let request = PinRequest {
            from: alert.starts_at - policy.before,
            to: alert.starts_at + policy.after,
            selection,
            reason,
            created_by: format!("alertmanager ({})", webhook.receiver)
                .chars()
                .take(100)
                .collect(),
            ttl: policy.ttl,
        };
        let seed = format!("alertmanager|{}|{}", alert.fingerprint, alert.starts_at);
        match request.into_pin(now, &seed) {
            Ok(pin) => pins.push(pin),
            // An alert whose labels make no valid pin is skipped, not the
            // webhook: the others still pin.
            Err(e) => tracing::warn!(alert = name, error = %e, "alert makes no valid pin; skipped"),
        }
    }
    Ok(pins)
}

/// Compares in time that does not depend on where they differ.
pub fn same_token(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

fn authorized(headers: &HeaderMap, token: &[u8]) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|given| same_token(given, token))
}

/// The receiver's routes: `POST /alerts`, `GET /healthz`.
pub fn router(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route(ROUTE, post(receive))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(receiver)
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&headers, &receiver.token) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token: set http_config.authorization.credentials_file in the webhook_config\n",
        )
            .into_response();
    }
    let pins = match pins_for(&body, &receiver.policy, Utc::now()) {
        Ok(pins) => pins,
        Err(e @ WebhookError::TooMany(_)) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, format!("{e}\n")).into_response();
        }
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let mut written = Vec::with_capacity(pins.len());
    for p in &pins {
        match pin::write(&receiver.client, &receiver.bucket, &receiver.prefix, p).await {
            Ok(key) => {
                tracing::info!(pin = %p.id, key, from = %p.from, to = %p.to, reason = %p.reason, "pin written");
                written.push(p.id.clone());
            }
            Err(e) => {
                tracing::error!(pin = %p.id, error = %e, "cannot write the pin; Alertmanager will send the alert again");
                // 5xx: Alertmanager retries the webhook.
                return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response();
            }
        }
    }
    (StatusCode::OK, format!("pinned {}\n", written.join(" "))).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy() -> PinPolicy {
        PinPolicy {
            before: TimeDelta::minutes(10),
            after: TimeDelta::minutes(5),
            ttl: TimeDelta::days(7),
        }
    }

    const WEBHOOK: &str = r#"{
      "version": "4", "groupKey": "{}:{alertname=\"X\"}", "truncatedAlerts": 0,
      "status": "firing", "receiver": "flight-recorder",
      "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
      "alerts": [
        {"status": "firing", "labels": {"alertname": "X", "node": "node-a"}, "annotations": {},
         "startsAt": "2026-12-04T03:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prom", "fingerprint": "aaaa"},
        {"status": "resolved", "labels": {"alertname": "Y"}, "annotations": {},
         "startsAt": "2026-12-04T02:00:00Z", "endsAt": "2026-12-04T02:30:00Z",
         "generatorURL": "http://prom", "fingerprint": "bbbb"}
      ]}"#;

    #[test]
    fn a_firing_alert_becomes_a_pin_around_its_start_and_a_resolved_one_none() {
        let now = "2026-12-04T03:01:00Z".parse().unwrap();
        let pins = pins_for(WEBHOOK.as_bytes(), &policy(), now).unwrap();
        assert_eq!(pins.len(), 1);
        let p = &pins[0];
        assert_eq!(
            p.from,
            "2026-12-04T02:50:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            p.to,
            "2026-12-04T03:05:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(p.selects("node-a") && !p.selects("node-b"));
        assert!(p.reason.contains('X'), "{}", p.reason);
        let again = pins_for(WEBHOOK.as_bytes(), &policy(), now + TimeDelta::minutes(4)).unwrap();
        assert_eq!(again[0].id, p.id, "a repeat makes the same pin");
    }

    #[test]
    fn another_version_is_refused_by_name() {
        let body = WEBHOOK.replace("\"version\": \"4\"", "\"version\": \"5\"");
        let err = pins_for(body.as_bytes(), &policy(), Utc::now()).unwrap_err();
        assert!(err.to_string().contains("\"5\""), "{err}");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token(b"secret", b"secret"));
        assert!(!same_token(b"secre", b"secret"));
        assert!(!same_token(b"secreT", b"secret"));
        let mut headers = HeaderMap::new();
        assert!(!authorized(&headers, b"secret"));
        headers.insert(header::AUTHORIZATION, "Bearer secret".parse().unwrap());
        assert!(authorized(&headers, b"secret"));
    }
}
