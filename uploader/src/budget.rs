//! The spool budget. Kubernetes evicts a pod whose emptyDir outgrows its
//! `sizeLimit`, and every capture in it is lost; so when the spool (active,
//! ready and quarantine) is over `--max-spool-mb`, files that are not
//! captures go first (quarantined files, foreign names in `ready/`: nothing
//! would ever remove them, and they would otherwise crowd out every new
//! capture), then the oldest waiting captures are deleted unsent until it
//! fits. A capture being uploaded is never dropped; each drop is logged and
//! counted.

use spool::SpoolLayout;

use crate::delete;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::state;

/// Logged for each capture dropped unsent (the fault ledger counts them).
pub use spool::logging::counted::UPLOADER_BUDGET_DROPPED as DROPPED_LOG;

/// Drops oldest waiting captures while the spool is over `max_bytes`;
/// updates the spool gauges. Returns the number of captures dropped.
pub fn enforce(spool: &SpoolLayout, max_bytes: u64, queue: &Queue, metrics: &Metrics) -> usize {
    let usage = spool.usage();
    let mut bytes = usage.bytes;
    let mut files = usage.files;
    let mut dropped = 0;
    let strays = spool.drop_strays(bytes, max_bytes);
    for stray in &strays.dropped {
        bytes = bytes.saturating_sub(stray.size);
        files = files.saturating_sub(1);
        metrics.dropped_non_capture_files.inc();
        metrics.dropped_non_capture_bytes.inc_by(stray.size);
        tracing::warn!(
            file = %stray.path.display(),
            bytes = stray.size,
            spool_bytes = bytes,
            max_bytes,
            "spool over budget: deleted a file that is not a capture (quarantined, or a foreign name in ready/), before any capture"
        );
    }
    if let Some((path, e)) = &strays.error {
        tracing::error!(file = %path.display(), error = %e, "cannot delete a file that is not a capture to keep the spool budget");
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Quarantined files and junk in `ready/` fill the budget: they are
    /// dropped, counted, and the waiting capture is kept.
    #[test]
    fn files_that_are_not_captures_are_dropped_before_any_capture() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
        std::fs::write(spool.quarantine().join("not-a-pcap"), vec![0u8; 3000]).unwrap();
        std::fs::write(spool.ready().join("notes.txt"), vec![0u8; 2000]).unwrap();
        let capture = spool.ready().join("20261127T142503Z.pcap");
        std::fs::write(&capture, vec![0u8; 1000]).unwrap();
        let queue = Queue::default();
        queue.refresh(spool.ready_captures().unwrap());
        let metrics = Metrics::new();

        let dropped = enforce(&spool, 1500, &queue, &metrics);

        assert_eq!(dropped, 0, "a capture was dropped");
        assert!(capture.exists());
        assert!(spool.strays().is_empty(), "{:?}", spool.strays());
        assert_eq!(metrics.dropped_non_capture_files.get(), 2);
        assert_eq!(metrics.dropped_non_capture_bytes.get(), 5000);
        assert_eq!(metrics.dropped_files.get(), 0);
        assert_eq!(metrics.spool_bytes.get(), 1000);
    }

    #[test]
    fn under_budget_nothing_is_dropped_not_even_strays() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
        let stray = spool.quarantine().join("not-a-pcap");
        std::fs::write(&stray, vec![0u8; 100]).unwrap();
        let metrics = Metrics::new();
        enforce(&spool, 1000, &Queue::default(), &metrics);
        assert!(stray.exists());
        assert_eq!(metrics.dropped_non_capture_files.get(), 0);
    }
}
