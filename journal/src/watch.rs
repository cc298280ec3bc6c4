//! The two watches: the node's pods (`fieldSelector=spec.nodeName=<node>`,
//! so the API server sends only this node's pods, whatever the cluster's
//! size) and the cluster's Services. kube-runtime's watcher does the list,
//! the watch from the list's resourceVersion, bookmarks, and the relist
//! after `410 Gone` in the stream; each object is cut down to its
//! [`crate::facts`] here, before it goes anywhere.
//!
//! After any error the watcher is dropped and started again, after a
//! jittered exponential delay (backon): a new watcher begins with a full
//! list, whose end (`InitDone`) is the one sure sign that the journal knows
//! the current state again. kube-runtime's own retry would resume the
//! watch silently, leaving no moment at which the journal could stop
//! calling itself stale. A list per reconnection is cheap: one node's pods.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::mpsc;

use crate::facts::{LabelAllowList, PodFacts, ServiceFacts};
use crate::table::{Change, Stream};

/// A change and when the journal learnt of it.
pub type Stamped = (Change, DateTime<Utc>);

/// How long to wait before watching again after an error.
#[derive(Debug, Clone, Copy)]
pub struct Reconnect {
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// Watches the pods of `node` until `changes` is closed.
pub async fn pods(
    client: Client,
    node: String,
    labels: LabelAllowList,
    changes: mpsc::Sender<Stamped>,
    reconnect: Reconnect,
) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let to_change = move |event: Event<Pod>| match event {
        Event::Init => Change::ListStarted(Stream::Pods),
        Event::InitApply(pod) | Event::Apply(pod) => {
            Change::PodApplied(PodFacts::of(&pod, &labels))
        }
        Event::Delete(pod) => Change::PodDeleted(PodFacts::of(&pod, &labels)),
        Event::InitDone => Change::ListDone(Stream::Pods),
    };
    run(api, config, Stream::Pods, to_change, changes, reconnect).await;
}

/// Watches every Service of the cluster until `changes` is closed.
pub async fn services(client: Client, changes: mpsc::Sender<Stamped>, reconnect: Reconnect) {
    let api: Api<Service> = Api::all(client);
    let to_change = |event: Event<Service>| match event {
        Event::Init => Change::ListStarted(Stream::Services),
        Event::InitApply(s) | Event::Apply(s) => Change::ServiceApplied(ServiceFacts::of(&s)),
        Event::Delete(s) => Change::ServiceDeleted(ServiceFacts::of(&s)),
        Event::InitDone => Change::ListDone(Stream::Services),
    };
    run(
        api,
        watcher::Config::default(),
        Stream::Services,
        to_change,
        changes,
        reconnect,
    )
    .await;
}

async fn run<K>(
    api: Api<K>,
    config: watcher::Config,
    stream: Stream,
    to_change: impl Fn(Event<K>) -> Change,
    changes: mpsc::Sender<Stamped>,
    reconnect: Reconnect,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let schedule = || {
        ExponentialBuilder::default()
            .with_min_delay(reconnect.min_delay)
            .with_max_delay(reconnect.max_delay)
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = schedule();
    let mut failures = 0u32;
    loop {
        let mut events = std::pin::pin!(watcher::watcher(api.clone(), config.clone()));
        let reason = loop {
            match events.next().await {
                Some(Ok(event)) => {
                    let listed = matches!(event, Event::InitDone);
                    if changes.send((to_change(event), Utc::now())).await.is_err() {
                        return;
                    }
                    if listed {
                        if failures > 0 {
                            tracing::info!(%stream, failures, "watching the API server again; the journal is current");
                        }
                        failures = 0;
                        delays = schedule();
                    }
                }
                Some(Err(error)) => break error.to_string(),
                None => break "the watch ended".to_owned(),
            }
        };
        failures = failures.saturating_add(1);
        let delay = delays.next().unwrap_or(reconnect.max_delay);
        // Once plainly; then only when it goes on (every 10th), so an
        // API server away for an hour does not fill the log.
        if failures == 1 || failures.is_multiple_of(10) {
            tracing::warn!(%stream, failures, error = %reason, retry_in = ?delay, "lost the API server; the journal keeps its last state and says stale until it has listed again");
        }
        if changes
            .send((Change::Lost { stream, reason }, Utc::now()))
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(delay).await;
    }
}
