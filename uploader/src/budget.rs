//! The spool budget. Kubernetes evicts a pod whose emptyDir outgrows its
//! `sizeLimit`, and every capture in it is lost; so when the spool (active
//! and ready) is over `--max-spool-mb`, the oldest waiting captures are
//! deleted unsent until it fits. A capture being uploaded is never dropped;
//! each drop is logged and counted.

use spool::SpoolLayout;

use crate::delete;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::state;

/// Logged for each capture dropped unsent (the fault ledger counts them).
pub const DROPPED_LOG: &str = "spool over budget: dropped the oldest waiting capture unsent";

/// Drops oldest waiting captures while the spool is over `max_bytes`;
/// updates the spool gauges. Returns the number of captures dropped.
pub fn enforce(spool: &SpoolLayout, max_bytes: u64, queue: &Queue, metrics: &Metrics) -> usize {
    let usage = spool.usage();
    let mut bytes = usage.bytes;
    let mut files = usage.files;
    let mut dropped = 0;
    if bytes > max_bytes {
        let mut inner = queue.lock();
        while bytes > max_bytes {
            let Some((_, capture)) = inner.pending.pop_first() else {
                tracing::warn!(
                    spool_bytes = bytes,
                    max_bytes,
                    "spool over budget but nothing left that may be dropped (all in flight or still being written)"
                );
                break;
            };
            let record = state::record_path(&spool.state(), &capture.file_name());
            match delete::remove_capture(&capture.path, &record) {
                Ok(()) => {
                    bytes = bytes.saturating_sub(capture.size);
                    files = files.saturating_sub(1);
                    dropped += 1;
                    metrics.dropped_files.inc();
                    metrics.dropped_bytes.inc_by(capture.size);
                    tracing::warn!(
                        file = %capture.file_name(),
                        bytes = capture.size,
                        spool_bytes = bytes,
                        max_bytes,
                        "{DROPPED_LOG}"
                    );
                }
                Err(e) => {
                    tracing::error!(file = %capture.path.display(), error = %e, "cannot drop capture to keep the spool budget");
                    break;
                }
            }
        }
    }
    metrics
        .spool_bytes
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    metrics
        .spool_files
        .set(i64::try_from(files).unwrap_or(i64::MAX));
    dropped
}
