//! The capture side's own spool budget: when the spool is over
//! `--max-spool-mb` plus 10 % (`plan.rs`), the uploader is not draining it
//! (down, crash-looping, or far behind), and the launcher keeps the rule of
//! [`spool::budget`] itself (strays first, then the oldest waiting captures
//! with their resume records), each drop logged and counted, so that the
//! kubelet never evicts the pod (and every capture in it) for outgrowing
//! its volume. The launcher cannot see the uploader's queue, so every
//! capture in `ready/` may be dropped; one the uploader has meanwhile
//! shipped is simply not counted.

use spool::SpoolLayout;
use spool::budget::SpoolBudget;

use crate::metrics::Metrics;

/// What the launcher logs for each capture it drops (the fault ledger
/// counts them).
pub use spool::logging::counted::LAUNCHER_BUDGET_DROPPED as DROPPED_LOG;

/// Drops the oldest ready captures while the spool is over `max_bytes`;
/// the totals since start, logged with each drop, are the metrics'.
pub fn enforce(spool: &SpoolLayout, max_bytes: u64, metrics: &Metrics) {
    let budget = SpoolBudget::new(max_bytes);
    // An unreadable ready/ offers nothing: the warning below says so.
    let waiting = spool.ready_captures().unwrap_or_default();
    let enforced = budget.enforce(spool, waiting);
    let mut bytes = enforced.before.bytes;
    for stray in &enforced.strays {
        bytes = bytes.saturating_sub(stray.size);
        metrics.budget_dropped_non_capture_files.inc();
        tracing::warn!(
            file = %stray.path.display(),
            bytes = stray.size,
            spool_bytes = bytes,
            max_bytes,
            dropped_non_capture_files_total = metrics.budget_dropped_non_capture_files.get(),
            "spool over budget and not drained by the uploader: deleted a file that is not a capture, before any capture"
        );
    }
    for capture in &enforced.captures {
        bytes = bytes.saturating_sub(capture.size);
        metrics.budget_dropped_captures.inc();
        metrics.budget_dropped_bytes.inc_by(capture.size);
        tracing::warn!(
            file = %capture.file_name(),
            bytes = capture.size,
            spool_bytes = bytes,
            max_bytes,
            dropped_files_total = metrics.budget_dropped_captures.get(),
            dropped_bytes_total = metrics.budget_dropped_bytes.get(),
            "{DROPPED_LOG}"
        );
    }
    match &enforced.error {
        Some((path, e)) => {
            tracing::error!(file = %path.display(), error = %e, "cannot delete a file to keep the spool budget");
        }
        None if budget.is_exceeded_by(enforced.after()) => {
            tracing::warn!(
                spool_bytes = enforced.after().bytes,
                max_bytes,
                "spool still over budget with nothing left to drop in ready/"
            );
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_ready_captures_go_first_until_under_budget() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
        for name in [
            "20261127T142501Z.pcap",
            "20261127T142502Z.pcap",
            "20261127T142503Z.pcap",
        ] {
            std::fs::write(spool.ready().join(name), vec![0u8; 1000]).unwrap();
        }
        std::fs::write(spool.active().join("20261127T142504Z.pcap"), vec![0u8; 500]).unwrap();
        let metrics = Metrics::new();
        enforce(&spool, 2000, &metrics);
        assert_eq!(metrics.budget_dropped_captures.get(), 2);
        assert_eq!(metrics.budget_dropped_bytes.get(), 2000);
        assert_eq!(metrics.budget_dropped_non_capture_files.get(), 0);
        let left: Vec<_> = spool
            .ready_captures()
            .unwrap()
            .iter()
            .map(|c| c.file_name())
            .collect();
        assert_eq!(left, ["20261127T142503Z.pcap"]);
        enforce(&spool, 2000, &metrics);
        assert_eq!(
            metrics.budget_dropped_captures.get(),
            2,
            "under budget: nothing more dropped"
        );
        assert_eq!(metrics.budget_dropped_bytes.get(), 2000);
    }

    #[test]
    fn files_that_are_not_captures_go_before_any_capture() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
        std::fs::write(spool.quarantine().join("not-a-pcap"), vec![0u8; 3000]).unwrap();
        let capture = spool.ready().join("20261127T142503Z.pcap");
        std::fs::write(&capture, vec![0u8; 1000]).unwrap();
        let metrics = Metrics::new();
        enforce(&spool, 2000, &metrics);
        assert!(capture.exists(), "a capture was dropped before the stray");
        assert_eq!(metrics.budget_dropped_captures.get(), 0);
        assert_eq!(metrics.budget_dropped_bytes.get(), 0);
        assert_eq!(metrics.budget_dropped_non_capture_files.get(), 1);
    }

    /// Nothing else removes a resume record whose capture is gone: left
    /// behind, records would pile up in `state/`.
    #[test]
    fn a_dropped_capture_takes_its_resume_record_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
        let capture = spool.ready().join("20261127T142501Z.pcap");
        std::fs::write(&capture, vec![0u8; 1000]).unwrap();
        let record = spool.resume_record("20261127T142501Z.pcap");
        std::fs::write(&record, b"{}").unwrap();
        let metrics = Metrics::new();
        enforce(&spool, 500, &metrics);
        assert_eq!(metrics.budget_dropped_captures.get(), 1);
        assert!(!capture.exists());
        assert!(
            !record.exists(),
            "the dropped capture's resume record was left in state/"
        );
    }
}
