//! One turn of one capture from `ready/` to S3 and out of the spool: hash,
//! upload, verify, delete. Every failure goes to the one decision,
//! [`RetryPolicy::decide`](crate::retry::RetryPolicy::decide): retry the
//! step, hash again, or end the turn (deferred, given up on, or forgotten).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::delete;
use crate::failure::{FailureKind, UploadError};
use crate::find::{self, Capture};
use crate::hash::{self, FileDigest, FlowIndex, Sha256Digest};
use crate::health::{Health, Source};
use crate::keys::KeyContext;
use crate::metrics::Metrics;
use crate::object_metadata::ObjectMetadata;
use crate::pins::PinBook;
use crate::quarantine;
use crate::retry::Decision;
use crate::state;
use crate::upload::{Job, PartPlan, Sender};
use crate::verify::Verified;

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
    /// Pinned mode's pins (`None`: every capture is shipped, untagged).
    pub pins: Option<Arc<PinBook>>,
    hashing: Arc<tokio::sync::Semaphore>,
    /// The first upload the store did not confirm is reported plainly once
    /// (by any worker); later ones are only counted.
    unconfirmed_reported: Arc<AtomicBool>,
}

/// How one turn of one capture ended.
#[derive(Debug)]
pub enum TurnEnd {
    /// Uploaded, verified and deleted.
    Shipped,
    /// The capture left `ready/` before it went: nothing left to do.
    Forgotten,
    /// Back of the queue, not to be tried again before `wait` has passed.
    Deferred { wait: Duration, error: UploadError },
    /// Given up on for this run (`--once`); it stays in `ready/`.
    GaveUp(UploadError),
}

/// What a turn does after a failed attempt (see [`Shipper::after_failure`]).
enum Next {
    /// The same step again.
    Retry,
    /// Back to hashing the capture.
    Rehash,
    End(TurnEnd),
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
            pins: None,
            hashing: Arc::new(tokio::sync::Semaphore::new(HASHING_LANES)),
            unconfirmed_reported: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Gives one capture its turn number `turn` (1 for its first): hash,
    /// upload, verify, delete, each failure decided by the retry policy. A
    /// turn that cannot finish ends: the caller then defers the capture
    /// (`pipeline.rs`), so that a capture that keeps failing never holds
    /// its worker.
    pub async fn ship(&self, capture: &Capture, turn: u32) -> TurnEnd {
        let started = Instant::now();
        let key = self
            .config
            .key_template
            .render(&self.key_context, &capture.name);
        let end = match self.turn(capture, &key, turn).await {
            Ok(Shipped {
                size,
                hashing,
                pinned,
            }) => {
                self.metrics.uploaded_files.inc();
                if pinned {
                    self.metrics.pins.uploaded_files.inc();
                }
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
                    pinned,
                    "uploaded, verified and deleted"
                );
                return TurnEnd::Shipped;
            }
            Err(end) => end,
        };
        match &end {
            TurnEnd::Forgotten => {
                tracing::info!(file = %capture.file_name(), "capture left ready/ before its upload; skipped");
            }
            TurnEnd::Deferred { error, .. } | TurnEnd::GaveUp(error) => {
                if !error.kind.is_transient() {
                    self.health.failed(Source::Upload, &key, error);
                }
                if matches!(end, TurnEnd::GaveUp(_)) {
                    tracing::error!(file = %capture.file_name(), key, error = %error, "giving up on this capture for this run; it stays in ready/");
                }
            }
            TurnEnd::Shipped => {}
        }
        end
    }

    /// Inspect (hash), publish (the capture, then its index), retire
    /// (delete). A body the store refused as corrupted is hashed again
    /// before it is sent again: the file on disk is the truth.
    async fn turn(&self, capture: &Capture, key: &str, turn: u32) -> Result<Shipped, TurnEnd> {
        let mut failures = 0u32;
        // What the bucket already holds from this turn, so that hashing
        // again (for the index, or for a stamp that moved) does not send
        // the same bytes twice.
        let mut published: Option<(Sha256Digest, Verified)> = None;
        // In pinned mode, the pin that made this capture go: its tags.
        let tagging = self
            .pins
            .as_ref()
            .and_then(|book| book.covering_capture(capture))
            .map(|pin| pin.tagging());
        'inspect: loop {
            let hashing_started = Instant::now();
            let (file, digest) = match self.hash(capture, key).await {
                Ok(hashed) => hashed,
                Err(e) => match self
                    .after_failure(&mut failures, turn, key, "hashing", e)
                    .await
                {
                    Next::Retry | Next::Rehash => continue 'inspect,
                    Next::End(end) => return Err(end),
                },
            };
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
            let mut metadata = ObjectMetadata::for_capture(
                &digest.sha256_hex(),
                capture.name.start(),
                &self.key_context.node,
                &digest.pcap,
            );
            metadata.drops =
                spool::counters::read(&self.config.spool.counters_record(&capture.file_name()))
                    .as_ref()
                    .and_then(bucket::object_metadata::Drops::from_counters);
            if let FlowIndex::Skipped(why) = &digest.index {
                tracing::warn!(file = %capture.file_name(), key, reason = %why, "no flow index for this capture; uploading it without one, marked `index: skipped` in its metadata");
                metadata.index_skipped = Some(why.to_string());
            }
            let metadata = metadata.to_headers();
            let job = Job {
                file: &file,
                path: &capture.path,
                key,
                digest: &digest,
                metadata: &metadata,
                tagging: tagging.as_deref(),
                record: state::record_path(&self.config.spool.state(), &capture.file_name()),
            };
            let verified = match published {
                Some((sha256, verified)) if sha256 == digest.sha256 => verified,
                _ => loop {
                    match self.publish_capture(&job).await {
                        Ok(verified) => break verified,
                        Err(e) => match self
                            .after_failure(&mut failures, turn, key, "upload", e)
                            .await
                        {
                            Next::Retry => {}
                            Next::Rehash => continue 'inspect,
                            Next::End(end) => return Err(end),
                        },
                    }
                },
            };
            published = Some((digest.sha256, verified));
            if let FlowIndex::Built(gz) = &digest.index {
                let index_key = self.index_key(capture);
                // The capture stays on the node until its index is in the bucket too.
                while let Err(e) = self
                    .sender
                    .put_index(&index_key, gz, tagging.as_deref())
                    .await
                {
                    match self
                        .after_failure(&mut failures, turn, &index_key, "flow index upload", e)
                        .await
                    {
                        Next::Retry => {}
                        // The index comes out of the hashing pass.
                        Next::Rehash => continue 'inspect,
                        Next::End(end) => return Err(end),
                    }
                }
            }
            if verified == Verified::Unconfirmed {
                self.metrics.unconfirmed_checksums.inc();
                if !self.unconfirmed_reported.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        key,
                        "the store accepted an upload without confirming its SHA-256 (some S3-compatible stores ignore the checksum header): uploads to it are not verified by the store; counted in s3_tcpdump_uploader_unconfirmed_checksums_total"
                    );
                }
            }
            match retire(&job, &digest) {
                Ok(()) => {
                    return Ok(Shipped {
                        size: digest.size,
                        hashing,
                        pinned: tagging.is_some(),
                    });
                }
                Err(e) => match self
                    .after_failure(&mut failures, turn, key, "delete", e)
                    .await
                {
                    Next::Retry | Next::Rehash => continue 'inspect,
                    Next::End(end) => return Err(end),
                },
            }
        }
    }

    /// Where a capture's flow index goes.
    fn index_key(&self, capture: &Capture) -> String {
        bucket::index_keys::index_key(
            self.config.key_template.static_prefix(),
            &self.key_context.node,
            capture.name.start(),
            &capture.file_name(),
        )
    }

    /// `pinned-with-index`: ships the flow index of a capture no pin covers
    /// and leaves the capture on the node. The index names the key the
    /// capture would have, so `captures find` finds its flows and `captures
    /// fetch` can say it was never shipped. Retried as the policy says
    /// (one turn); what is left is tried again at the next pass.
    pub async fn ship_ring_index(&self, capture: &Capture) -> Result<(), UploadError> {
        let key = self
            .config
            .key_template
            .render(&self.key_context, &capture.name);
        let mut attempt = 0u32;
        loop {
            let result = match self.hash(capture, &key).await {
                Ok((_, digest)) => match &digest.index {
                    FlowIndex::Built(gz) => self
                        .sender
                        .put_index(&self.index_key(capture), gz, None)
                        .await
                        .map(|_| true),
                    FlowIndex::Skipped(why) => {
                        tracing::warn!(file = %capture.file_name(), reason = %why, "no flow index for this capture; it stays on the node unindexed");
                        Ok(false)
                    }
                    FlowIndex::NotAsked => Ok(false),
                },
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(sent) => {
                    if sent {
                        self.metrics.pins.ring_indexes.inc();
                        tracing::info!(file = %capture.file_name(), key, "flow index shipped; the capture stays on the node until a pin covers it or it expires");
                    }
                    return Ok(());
                }
                Err(error) => error,
            };
            // The index comes out of the hashing pass: read again each time.
            self.again_or_give_up(&mut attempt, &key, "flow index upload", error)
                .await?;
        }
    }

    /// For a small object sent whole (a flow index alone, a journal
    /// segment), which is read again on every attempt: counts the failure,
    /// and waits out the retry policy's delay (`Ok`) or gives the error back
    /// when the policy ends the turn.
    pub async fn again_or_give_up(
        &self,
        attempt: &mut u32,
        key: &str,
        what: &str,
        error: UploadError,
    ) -> Result<(), UploadError> {
        self.metrics.failure(error.kind);
        *attempt = attempt.saturating_add(1);
        match self.config.retry.decide(error.kind, *attempt, 1) {
            Decision::RetryAfter(delay) => {
                self.metrics.retries.inc();
                tracing::debug!(key, kind = %error.kind, error = %error.detail, ?delay, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Decision::Rehash => Ok(()),
            Decision::Defer(_) | Decision::GiveUp | Decision::Forget => Err(error),
        }
    }

    /// One attempt at sending the capture.
    async fn publish_capture(&self, job: &Job<'_>) -> Result<Verified, UploadError> {
        // The budget never drops a capture in flight, but a person might.
        if std::fs::symlink_metadata(job.path).is_err() {
            return Err(UploadError::new(FailureKind::Gone, "capture disappeared"));
        }
        if self.config.is_multipart(job.digest.size) {
            let plan = PartPlan::new(job.digest.size, self.config.part_size_for(job.digest.size));
            self.sender.multipart(job, plan).await
        } else {
            self.sender.put_single(job).await
        }
    }

    /// Counts a failed attempt and asks the retry policy what comes next;
    /// waits out a retry's delay.
    async fn after_failure(
        &self,
        failures: &mut u32,
        turn: u32,
        key: &str,
        what: &str,
        error: UploadError,
    ) -> Next {
        self.metrics.failure(error.kind);
        *failures = failures.saturating_add(1);
        match self.config.retry.decide(error.kind, *failures, turn) {
            Decision::RetryAfter(delay) => {
                self.metrics.retries.inc();
                tracing::warn!(key, kind = %error.kind, error = %error.detail, ?delay, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                Next::Retry
            }
            Decision::Rehash => {
                tracing::warn!(key, error = %error.detail, "the store refused the body as corrupted; hashing the capture again before the next try");
                Next::Rehash
            }
            Decision::Defer(wait) => Next::End(TurnEnd::Deferred { wait, error }),
            Decision::GiveUp => Next::End(TurnEnd::GaveUp(error)),
            Decision::Forget => Next::End(TurnEnd::Forgotten),
        }
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
            } else if find::is_not_regular(&e) {
                // Swapped in after the scan: set aside, never read.
                quarantine::not_regular(&self.config.spool, &capture.path, &self.metrics);
                FailureKind::Gone
            } else {
                FailureKind::LocalIo
            };
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
    /// Shipped because a pin covered it (tagged).
    pinned: bool,
}

/// Deletes the capture once the bucket holds it. The single-request path
/// has no stamp check of its own: this one covers both, and also a path
/// that now names another file (then it is hashed and sent again).
fn retire(job: &Job<'_>, digest: &FileDigest) -> Result<(), UploadError> {
    delete::remove_uploaded(job.path, job.file, digest.stamp, &job.record).map_err(|e| match e {
        delete::NotDeleted::Changed { .. } => UploadError::new(
            FailureKind::ChecksumMismatch,
            format!("uploaded but not deleted: {e}; hashing it again"),
        ),
        delete::NotDeleted::Io { .. } => {
            UploadError::new(FailureKind::LocalIo, format!("uploaded but {e}"))
        }
    })
}
