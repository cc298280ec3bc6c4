//! One capture from `ready/` to S3 and out of the spool: hash, upload,
//! verify, delete — retried per `retry.rs` until it went.

use std::sync::Arc;
use std::time::Instant;

use backon::Retryable as _;

use crate::config::{Config, Mode};
use crate::delete;
use crate::failure::{FailureKind, UploadError};
use crate::find::Capture;
use crate::hash::{self, FileDigest};
use crate::health::{Health, Source};
use crate::keys::KeyContext;
use crate::metrics::Metrics;
use crate::object_metadata;
use crate::state;
use crate::upload::{Job, PartPlan, Sender};
use crate::verify::Verified;

/// How often a capture is hashed again after the store refused its body as
/// corrupted, before the slow retry schedule takes over.
const MISMATCH_REHASHES: u32 = 3;

/// The first unconfirmed upload is reported plainly once; later ones are
/// only counted.
static UNCONFIRMED_REPORTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Whole-file hashing passes at once. Hashing runs several times faster
/// than a store takes the bytes, so one lane keeps the senders fed; more
/// would only make the first capture of a backlog wait for the others'
/// hashes before its first byte is sent.
const HASHING_LANES: usize = 1;

#[derive(Debug, Clone)]
pub struct Shipper {
    pub config: Arc<Config>,
    pub sender: Sender,
    pub key_context: Arc<KeyContext>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    hashing: Arc<tokio::sync::Semaphore>,
}

impl Shipper {
    pub fn new(
        config: Arc<Config>,
        client: aws_sdk_s3::Client,
        key_context: KeyContext,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Self {
        Self {
            sender: Sender::new(client, config.s3.clone(), config.concurrency),
            config,
            key_context: Arc::new(key_context),
            metrics,
            health,
            hashing: Arc::new(tokio::sync::Semaphore::new(HASHING_LANES)),
        }
    }

    /// Ships one capture. Returns when it is uploaded and deleted, when it
    /// disappeared, or (`--once` only) when retries ran out.
    pub async fn ship(&self, capture: &Capture) -> Result<(), UploadError> {
        let started = Instant::now();
        let key = self
            .config
            .key_template
            .render(&self.key_context, &capture.name);
        loop {
            match self.attempt(capture, &key).await {
                Ok(Shipped { size, hashing }) => {
                    self.metrics.uploaded_files.inc();
                    self.metrics.uploaded_bytes.inc_by(size);
                    self.metrics
                        .upload_duration
                        .observe(started.elapsed().as_secs_f64());
                    self.health.succeeded(Source::Upload);
                    tracing::info!(
                        file = %capture.file_name(),
                        key,
                        bytes = size,
                        seconds = started.elapsed().as_secs_f64(),
                        hashing_seconds = hashing.as_secs_f64(),
                        "uploaded, verified and deleted"
                    );
                    return Ok(());
                }
                Err(e) if e.kind == FailureKind::Gone => {
                    tracing::info!(file = %capture.file_name(), "capture left ready/ before its upload; skipped");
                    return Err(e);
                }
                Err(e) => {
                    if !e.kind.is_transient() {
                        self.health.failed(Source::Upload, &key, &e);
                    }
                    if self.config.mode == Mode::Once {
                        tracing::error!(file = %capture.file_name(), key, error = %e, "giving up on this capture for this run; it stays in ready/");
                        return Err(e);
                    }
                    tracing::debug!(file = %capture.file_name(), error = %e, delay = ?self.config.retry.permanent_delay, "retrying slowly");
                    tokio::time::sleep(self.config.retry.permanent_delay).await;
                    self.metrics.retries.inc();
                }
            }
        }
    }

    /// Hash, then upload with fast retries of transient failures, then
    /// delete. A body the store refused as corrupted (checksum mismatch) is
    /// hashed again before the next try: the file on disk is the truth.
    async fn attempt(&self, capture: &Capture, key: &str) -> Result<Shipped, UploadError> {
        let mut mismatches = 0;
        loop {
            match self.attempt_once(capture, key).await {
                Err(e)
                    if e.kind == FailureKind::ChecksumMismatch
                        && mismatches < MISMATCH_REHASHES =>
                {
                    mismatches += 1;
                    tracing::warn!(file = %capture.file_name(), key, error = %e.detail, "the store refused the body as corrupted; hashing the capture again before the next try");
                }
                other => return other,
            }
        }
    }

    async fn attempt_once(&self, capture: &Capture, key: &str) -> Result<Shipped, UploadError> {
        let hashing_started = Instant::now();
        let (file, digest) = self.hash(capture, key).await?;
        let hashing = hashing_started.elapsed();
        if let Some(damage) = digest.pcap.damage {
            self.metrics.damaged_captures.inc();
            tracing::error!(
                file = %capture.file_name(),
                key,
                packets = digest.pcap.packets,
                damage = %damage,
                "capture is damaged; uploading it all the same (it is evidence), marked `pcap: damaged` in its metadata"
            );
        }
        let mut metadata = object_metadata::for_capture(
            &digest.sha256_hex(),
            capture.name.start(),
            &self.key_context.node,
            &digest.pcap,
        );
        if let Some(why) = &digest.index_skipped {
            tracing::warn!(file = %capture.file_name(), key, reason = %why, "no flow index for this capture; uploading it without one, marked `index: skipped` in its metadata");
            metadata.insert(object_metadata::INDEX.to_owned(), format!("skipped: {why}"));
        }
        let job = Job {
            file: &file,
            path: &capture.path,
            key,
            digest: &digest,
            metadata: &metadata,
            record: state::record_path(&self.config.spool.state(), &capture.file_name()),
        };
        let parts = self
            .config
            .is_multipart(digest.size)
            .then(|| PartPlan::new(digest.size, self.config.part_size_for(digest.size)));
        let upload = || async {
            // The budget never drops a capture in flight, but a person might.
            if std::fs::symlink_metadata(job.path).is_err() {
                return Err(UploadError::new(FailureKind::Gone, "capture disappeared"));
            }
            if let Some(plan) = parts {
                self.sender.multipart(&job, plan).await
            } else {
                self.sender.put_single(&job).await
            }
        };
        // A corrupted body is not re-sent as it is: `attempt` hashes again.
        let verified = self
            .with_fast_retries(key, "upload", upload, |kind| {
                kind != FailureKind::ChecksumMismatch
            })
            .await?;
        if let Some(gz) = &digest.index {
            let index_key = flows::schema::index_key(
                self.config.key_template.static_prefix(),
                &self.key_context.node,
                capture.name.start(),
                &capture.file_name(),
            );
            // The capture stays on the node until its index is in the bucket too.
            self.with_fast_retries(
                &index_key,
                "flow index upload",
                || self.sender.put_index(&index_key, gz),
                |_| true,
            )
            .await?;
        }
        if verified == Verified::Unconfirmed {
            self.metrics.unconfirmed_checksums.inc();
            if !UNCONFIRMED_REPORTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    key,
                    "the store accepted an upload without confirming its SHA-256 (some S3-compatible stores ignore the checksum header): uploads to it are not verified by the store; counted in s3_tcpdump_uploader_unconfirmed_checksums_total"
                );
            }
        }
        delete::remove_capture(job.path, &job.record).map_err(|e| {
            UploadError::new(
                FailureKind::LocalIo,
                format!("uploaded but cannot delete {}: {e}", job.path.display()),
            )
        })?;
        Ok(Shipped {
            size: digest.size,
            hashing,
        })
    }

    /// Runs `op` with fast retries of transient failures (those `also`
    /// accepts), counting every failure and retry.
    async fn with_fast_retries<T, Fut>(
        &self,
        key: &str,
        what: &str,
        op: impl FnMut() -> Fut,
        also: impl Fn(FailureKind) -> bool,
    ) -> Result<T, UploadError>
    where
        Fut: std::future::Future<Output = Result<T, UploadError>>,
    {
        let mut op = op;
        let counted = || {
            let attempt = op();
            async {
                let result = attempt.await;
                if let Err(e) = &result {
                    self.metrics.failure(e.kind);
                }
                result
            }
        };
        counted
            .retry(self.config.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(|e: &UploadError| e.kind.is_transient() && also(e.kind))
            .notify(|e: &UploadError, delay| {
                self.metrics.retries.inc();
                tracing::warn!(key, kind = %e.kind, error = %e.detail, ?delay, "{what} failed; retrying");
            })
            .await
    }

    async fn hash(
        &self,
        capture: &Capture,
        key: &str,
    ) -> Result<(std::fs::File, FileDigest), UploadError> {
        let path = capture.path.clone();
        let index_as = self.config.flow_index.then(|| key.to_owned());
        let _lane = self
            .hashing
            .acquire()
            .await
            .map_err(|_| UploadError::new(FailureKind::LocalIo, "shutting down"))?;
        let result =
            tokio::task::spawn_blocking(move || hash::hash_file(&path, index_as.as_deref()))
                .await
                .map_err(|e| {
                    UploadError::new(FailureKind::LocalIo, format!("hashing task: {e}"))
                })?;
        result.map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                FailureKind::Gone
            } else {
                FailureKind::LocalIo
            };
            self.metrics.failure(kind);
            UploadError::new(kind, format!("hashing {}: {e}", capture.path.display()))
        })
    }
}

/// One capture shipped: its size, and how long its whole-file pass took
/// (logged beside the total, so a slow upload shows which stage was slow).
#[derive(Debug, Clone, Copy)]
struct Shipped {
    size: u64,
    hashing: std::time::Duration,
}
