//! The spool budget, as the uploader keeps it: the rule is
//! [`spool::budget`] (strays first, then the oldest waiting captures with
//! their resume records); the uploader offers only the captures waiting in
//! its queue, never one being uploaded, and logs and counts each drop. In
//! pinned mode the ring's captures (no pin covers them) go first, counted
//! as expired ([`enforce_ring`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use spool::budget::SpoolBudget;
use spool::{CaptureName, SpoolLayout};

use crate::find::Capture;
use crate::metrics::Metrics;
use crate::pins::{EXPIRED_LOG, PinBook};
use crate::queue::Queue;

/// Logged for each capture dropped unsent (the fault ledger counts them).
pub use spool::logging::counted::UPLOADER_BUDGET_DROPPED as DROPPED_LOG;

/// Drops oldest waiting captures while the spool is over `max_bytes`;
/// updates the spool gauges. Returns the number of captures dropped.
pub fn enforce(spool: &SpoolLayout, max_bytes: u64, queue: &Queue, metrics: &Metrics) -> usize {
    enforce_ring(spool, max_bytes, Vec::new(), queue, metrics, None)
}

/// The budget in pinned mode: the ring (captures no pin covers, oldest
/// first, each with its last write) goes first, each capture counted as
/// expired, not dropped (keeping only the last hours is the mode's point);
/// only then waiting pinned captures, dropped and counted as today.
/// Returns the number of captures dropped (expired ones not included).
pub fn enforce_ring(
    spool: &SpoolLayout,
    max_bytes: u64,
    ring: Vec<(Capture, DateTime<Utc>)>,
    queue: &Queue,
    metrics: &Metrics,
    book: Option<&PinBook>,
) -> usize {
    let budget = SpoolBudget::new(max_bytes);
    let ends: HashMap<CaptureName, DateTime<Utc>> =
        ring.iter().map(|(c, end)| (c.name, *end)).collect();
    let ring = ring.into_iter().map(|(c, _)| c);
    let enforced = budget.enforce(spool, ring.chain(queue.take_waiting()));
    let mut bytes = enforced.before.bytes;
    for stray in &enforced.strays {
        bytes = bytes.saturating_sub(stray.size);
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
    let mut dropped = 0;
    for capture in &enforced.captures {
        bytes = bytes.saturating_sub(capture.size);
        if let Some(end) = ends.get(&capture.name) {
            metrics.pins.expired_files.inc();
            metrics.pins.expired_bytes.inc_by(capture.size);
            if let Some(book) = book {
                book.expired(*end);
            }
            tracing::info!(
                file = %capture.file_name(),
                bytes = capture.size,
                last_packet = %end,
                spool_bytes = bytes,
                max_bytes,
                "{EXPIRED_LOG}"
            );
            continue;
        }
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
    let after = enforced.after();
    match &enforced.error {
        Some((path, e)) => {
            tracing::error!(file = %path.display(), error = %e, "cannot delete a file to keep the spool budget");
        }
        None if budget.is_exceeded_by(after) => {
            tracing::warn!(
                spool_bytes = after.bytes,
                max_bytes,
                "spool over budget but nothing left that may be dropped (all in flight or still being written)"
            );
        }
        None => {}
    }
    metrics
        .spool_bytes
        .set(i64::try_from(after.bytes).unwrap_or(i64::MAX));
    metrics
        .spool_files
        .set(i64::try_from(after.files).unwrap_or(i64::MAX));
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

    #[tokio::test]
    async fn a_capture_being_uploaded_is_never_dropped_and_a_dropped_one_leaves_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
        for name in ["20261127T142501Z.pcap", "20261127T142502Z.pcap"] {
            std::fs::write(spool.ready().join(name), vec![0u8; 1000]).unwrap();
            std::fs::write(spool.resume_record(name), b"{}").unwrap();
        }
        let queue = Queue::default();
        queue.refresh(spool.ready_captures().unwrap());
        let uploading = queue.next().await.unwrap();
        let metrics = Metrics::new();

        let dropped = enforce(&spool, 500, &queue, &metrics);

        assert_eq!(dropped, 1);
        assert!(uploading.path.exists(), "the capture in flight was dropped");
        assert!(spool.resume_record(&uploading.file_name()).exists());
        assert!(!spool.ready().join("20261127T142502Z.pcap").exists());
        assert!(!spool.resume_record("20261127T142502Z.pcap").exists());
        assert_eq!(
            queue.oldest(),
            Some(uploading.name),
            "only the one in flight is left"
        );
        assert_eq!(metrics.dropped_bytes.get(), 1000);
    }

    /// Pinned mode: the ring's oldest go first, counted as expired (not
    /// dropped), and the book learns how far the ring reaches back.
    #[tokio::test]
    async fn in_pinned_mode_the_ring_expires_first_and_is_not_counted_as_dropped() {
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
        let book = PinBook::load("node-a", spool.pins_cache());
        let all = spool.ready_captures().unwrap();
        let (covered, ring) = book.split(all);
        assert!(covered.is_empty(), "no pin, nothing covered");
        let queue = Queue::default();
        // The newest stands for a pinned capture waiting in the queue.
        let mut ring = ring;
        let pinned = ring.pop().unwrap().0;
        queue.refresh(vec![pinned.clone()]);
        let metrics = Metrics::new();

        let dropped = enforce_ring(&spool, 1500, ring, &queue, &metrics, Some(&book));

        assert_eq!(dropped, 0, "a pinned capture was dropped");
        assert!(pinned.path.exists());
        assert_eq!(spool.ready_captures().unwrap().len(), 1);
        assert_eq!(metrics.pins.expired_files.get(), 2);
        assert_eq!(metrics.pins.expired_bytes.get(), 2000);
        assert_eq!(metrics.dropped_files.get(), 0);
        assert!(book.expired_through().is_some());
    }
}
