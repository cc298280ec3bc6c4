//! The upload pipeline: a [`Queue`] fed by scans of `ready/`, and
//! `--concurrency` workers that ship what it hands out, remembering which
//! captures failed (what `--once` reports).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;

use crate::budget;
use crate::config::Config;
use crate::failure::UploadError;
use crate::find::{self, Capture};
use crate::metrics::Metrics;
use crate::pins::PinBook;
use crate::quarantine;
use crate::queue::Queue;
use crate::ship::{Shipper, TurnEnd};

#[derive(Debug)]
pub struct Pipeline {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    queue: Arc<Queue>,
    /// Pinned mode's pins (`None`: every capture is shipped).
    pins: Option<Arc<PinBook>>,
    workers: JoinSet<()>,
    /// File names of captures whose shipping failed (not those that left
    /// `ready/` before their upload).
    failed: Arc<Mutex<Vec<String>>>,
}

impl Pipeline {
    /// Starts the workers; they wait for the first scan.
    pub fn start(shipper: &Shipper) -> Self {
        let queue = Arc::new(Queue::default());
        let failed = Arc::new(Mutex::new(Vec::new()));
        let mut workers = JoinSet::new();
        for _ in 0..shipper.config.concurrency {
            let (queue, shipper, failed) = (queue.clone(), shipper.clone(), failed.clone());
            workers.spawn(async move {
                while let Some(capture) = queue.next().await {
                    let turn = queue.failed_turns(&capture.name).saturating_add(1);
                    match shipper.ship(&capture, turn).await {
                        TurnEnd::Shipped | TurnEnd::Forgotten => queue.finish(&capture.name),
                        TurnEnd::GaveUp(_) => {
                            failed
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(capture.file_name());
                            queue.finish(&capture.name);
                        }
                        TurnEnd::Deferred { wait, error } => {
                            defer(&shipper, &queue, capture, wait, &error)
                        }
                    }
                }
            });
        }
        let config = &shipper.config;
        tracing::info!(
            spool = %config.spool.root().display(),
            bucket = %config.s3.bucket,
            key_template = %config.key_template.as_str(),
            concurrency = config.concurrency,
            "uploader started"
        );
        Self {
            config: shipper.config.clone(),
            metrics: shipper.metrics.clone(),
            queue,
            pins: shipper.pins.clone(),
            workers,
            failed,
        }
    }

    /// Scans `ready/` once into the queue (see [`rescan`]).
    pub fn rescan(&self) {
        rescan(
            &self.config,
            &self.queue,
            &self.metrics,
            self.pins.as_deref(),
        );
    }

    /// Whether nothing is waiting or being uploaded (in pinned mode, what
    /// the drain waits for: the ring is not shipped).
    pub fn is_idle(&self) -> bool {
        self.queue.oldest().is_none()
    }

    /// [`Self::is_idle`], for a task of its own.
    pub fn idleness(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let queue = self.queue.clone();
        move || queue.oldest().is_none()
    }

    /// A scanner for a task of its own: scans into this pipeline's queue.
    pub fn scanner(&self) -> impl Fn() + Send + Sync + 'static {
        let (config, queue, metrics, pins) = (
            self.config.clone(),
            self.queue.clone(),
            self.metrics.clone(),
            self.pins.clone(),
        );
        move || rescan(&config, &queue, &metrics, pins.as_deref())
    }

    /// No more work: the workers finish what is queued and stop. Returns
    /// the captures that failed.
    pub async fn close_and_wait(mut self) -> Vec<String> {
        self.queue.close();
        while self.workers.join_next().await.is_some() {}
        std::mem::take(&mut *self.failed.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Stops the workers where they are (uploads in flight resume on the
    /// next start).
    pub fn abort(&mut self) {
        self.workers.abort_all();
    }
}

/// A capture whose turn failed gives its lane up: back in the queue, to be
/// tried again after its own growing delay, while other captures go on.
fn defer(shipper: &Shipper, queue: &Queue, capture: Capture, wait: Duration, error: &UploadError) {
    let file = capture.file_name();
    let failed_turns = queue.defer(capture, wait);
    shipper.metrics.deferrals.inc();
    let message = "upload failed; the capture goes to the back of the queue so that other captures go on (it stays in ready/)";
    // Once per capture plainly; its later turns are counted (deferrals_total).
    if failed_turns == 1 {
        tracing::warn!(file, failed_turns, retry_in = ?wait, kind = %error.kind, error = %error.detail, "{message}");
    } else {
        tracing::debug!(file, failed_turns, retry_in = ?wait, kind = %error.kind, error = %error.detail, "{message}");
    }
}

/// Scans `ready/`, feeds the queue, keeps the budget, updates the gauges.
/// In pinned mode only captures a pin covers are queued; the others are the
/// ring, whose oldest expire under the budget.
fn rescan(config: &Config, queue: &Queue, metrics: &Metrics, pins: Option<&PinBook>) {
    metrics.scans.inc();
    let mut ring = Vec::new();
    match find::scan(&config.spool) {
        Ok(found) => {
            for path in &found.not_regular {
                quarantine::not_regular(&config.spool, path, metrics);
            }
            match pins {
                None => queue.refresh(found.captures),
                Some(book) => {
                    let (covered, rest) = book.split(found.captures);
                    queue.refresh(covered);
                    ring = rest;
                }
            }
        }
        Err(e) => {
            tracing::error!(path = %config.spool.ready().display(), error = %e, "cannot scan ready/")
        }
    }
    budget::enforce_ring(
        &config.spool,
        config.max_spool_bytes,
        ring,
        queue,
        metrics,
        pins,
    );
    let age = queue
        .oldest()
        .map(|name| (Utc::now() - name.start()).num_seconds().max(0))
        .unwrap_or(0);
    metrics.oldest_pending_age_seconds.set(age);
}
