//! The spool budget, one rule for both containers. Kubernetes evicts a pod
//! whose emptyDir outgrows its `sizeLimit`, and every capture in it is
//! lost; so while the spool (active, ready and quarantine) is over its
//! budget, files that are not captures go first (quarantined files, foreign
//! names in `ready/`: nothing would ever remove them, and they would
//! otherwise crowd out every new capture), then the oldest waiting captures
//! are deleted unsent, each with its resume record in `state/`, until it
//! fits.
//!
//! Which captures may be dropped is the caller's to say: the uploader
//! offers only those waiting in its queue (never one being uploaded), the
//! launcher every capture in `ready/`. This module deletes and reports;
//! each binary logs and counts what it dropped with its own metrics.

use std::io;
use std::path::PathBuf;

use crate::{CaptureFile, SpoolLayout, StrayFile, Usage};

/// The most bytes the spool may hold before files are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolBudget {
    pub max_bytes: u64,
}

/// What one [`SpoolBudget::enforce`] did.
#[derive(Debug, Default)]
pub struct Enforced {
    /// The spool's usage before anything was dropped.
    pub before: Usage,
    /// Files that are not captures, deleted before any capture, in order.
    pub strays: Vec<StrayFile>,
    /// Captures deleted unsent (with their resume records), oldest first.
    pub captures: Vec<CaptureFile>,
    /// The file that could not be deleted; enforcement stopped there.
    pub error: Option<(PathBuf, io::Error)>,
}

impl Enforced {
    /// The spool's usage after the drops.
    pub fn after(&self) -> Usage {
        self.strays
            .iter()
            .map(|s| s.size)
            .chain(self.captures.iter().map(|c| c.size))
            .fold(self.before, |usage, size| Usage {
                files: usage.files.saturating_sub(1),
                bytes: usage.bytes.saturating_sub(size),
            })
    }
}

impl SpoolBudget {
    pub fn new(max_bytes: u64) -> Self {
        Self { max_bytes }
    }

    /// Whether `usage` is more than the budget allows.
    pub fn is_exceeded_by(&self, usage: Usage) -> bool {
        usage.bytes > self.max_bytes
    }

    /// Brings the spool under budget: strays first, then captures from
    /// `droppable` (the oldest first; it is pulled only while the spool is
    /// still over, so a caller may hand out captures lazily). A capture
    /// already gone (uploaded meanwhile, or removed by hand) is not counted
    /// as dropped; its resume record, if any, goes all the same, since
    /// nothing is left to resume.
    pub fn enforce(
        &self,
        spool: &SpoolLayout,
        droppable: impl IntoIterator<Item = CaptureFile>,
    ) -> Enforced {
        let before = spool.usage();
        let mut enforced = Enforced {
            before,
            ..Enforced::default()
        };
        if !self.is_exceeded_by(before) {
            return enforced;
        }
        let strays = spool.drop_strays(before.bytes, self.max_bytes);
        enforced.strays = strays.dropped;
        if strays.error.is_some() {
            enforced.error = strays.error;
            return enforced;
        }
        let mut droppable = droppable.into_iter();
        while self.is_exceeded_by(enforced.after()) {
            let Some(capture) = droppable.next() else {
                break;
            };
            let record = spool.resume_record(&capture.file_name());
            match std::fs::remove_file(&capture.path) {
                Ok(()) => {
                    // Best effort: a stray record is swept at the
                    // launcher's next start.
                    let _ = crate::counters::remove(&spool.counters_record(&capture.file_name()));
                    let record_removed = remove_if_present(&record);
                    enforced.captures.push(capture);
                    if let Err(e) = record_removed {
                        enforced.error = Some((record, e));
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if let Err(e) = remove_if_present(&record) {
                        enforced.error = Some((record, e));
                        break;
                    }
                }
                Err(e) => {
                    enforced.error = Some((capture.path, e));
                    break;
                }
            }
        }
        enforced
    }
}

fn remove_if_present(path: &std::path::Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool_with_ready(sizes: &[(&str, usize)]) -> (tempfile::TempDir, SpoolLayout) {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
        for (name, size) in sizes {
            std::fs::write(spool.ready().join(name), vec![0u8; *size]).unwrap();
        }
        (dir, spool)
    }

    fn names(captures: &[CaptureFile]) -> Vec<String> {
        captures.iter().map(CaptureFile::file_name).collect()
    }

    #[test]
    fn oldest_captures_go_first_until_under_budget() {
        let (_dir, spool) = spool_with_ready(&[
            ("20261127T142501Z.pcap", 1000),
            ("20261127T142502Z.pcap", 1000),
            ("20261127T142503Z.pcap", 1000),
        ]);
        std::fs::write(spool.active().join("20261127T142504Z.pcap"), vec![0u8; 500]).unwrap();
        let budget = SpoolBudget::new(2000);

        let enforced = budget.enforce(&spool, spool.ready_captures().unwrap());

        assert_eq!(
            names(&enforced.captures),
            ["20261127T142501Z.pcap", "20261127T142502Z.pcap"]
        );
        assert_eq!(
            enforced.after(),
            Usage {
                files: 2,
                bytes: 1500
            }
        );
        assert_eq!(
            names(&spool.ready_captures().unwrap()),
            ["20261127T142503Z.pcap"]
        );
        let again = budget.enforce(&spool, spool.ready_captures().unwrap());
        assert!(again.captures.is_empty(), "under budget: nothing dropped");
    }

    #[test]
    fn a_dropped_capture_takes_its_resume_record_with_it() {
        let (_dir, spool) = spool_with_ready(&[
            ("20261127T142501Z.pcap", 1000),
            ("20261127T142502Z.pcap", 1000),
        ]);
        let dropped_record = spool.resume_record("20261127T142501Z.pcap");
        let kept_record = spool.resume_record("20261127T142502Z.pcap");
        std::fs::write(&dropped_record, b"{}").unwrap();
        std::fs::write(&kept_record, b"{}").unwrap();

        let enforced = SpoolBudget::new(1500).enforce(&spool, spool.ready_captures().unwrap());

        assert_eq!(names(&enforced.captures), ["20261127T142501Z.pcap"]);
        assert!(
            !dropped_record.exists(),
            "the resume record was left behind"
        );
        assert!(
            kept_record.exists(),
            "a kept capture lost its resume record"
        );
        assert!(enforced.error.is_none(), "{:?}", enforced.error);
    }

    #[test]
    fn captures_the_caller_withholds_are_never_dropped() {
        let (_dir, spool) = spool_with_ready(&[
            ("20261127T142501Z.pcap", 1000),
            ("20261127T142502Z.pcap", 1000),
        ]);
        // The oldest is being uploaded: the caller does not offer it.
        let droppable: Vec<_> = spool
            .ready_captures()
            .unwrap()
            .into_iter()
            .filter(|c| c.file_name() != "20261127T142501Z.pcap")
            .collect();

        let enforced = SpoolBudget::new(500).enforce(&spool, droppable);

        assert_eq!(names(&enforced.captures), ["20261127T142502Z.pcap"]);
        assert!(spool.ready().join("20261127T142501Z.pcap").exists());
        assert_eq!(
            enforced.after().bytes,
            1000,
            "still over, nothing else offered"
        );
    }

    #[test]
    fn files_that_are_not_captures_go_before_any_capture() {
        let (_dir, spool) = spool_with_ready(&[("20261127T142503Z.pcap", 1000)]);
        std::fs::write(spool.quarantine().join("not-a-pcap"), vec![0u8; 3000]).unwrap();
        std::fs::write(spool.ready().join("notes.txt"), vec![0u8; 2000]).unwrap();

        let enforced = SpoolBudget::new(1500).enforce(&spool, spool.ready_captures().unwrap());

        assert_eq!(enforced.strays.len(), 2);
        assert!(
            enforced.captures.is_empty(),
            "a capture went before a stray"
        );
        assert!(spool.ready().join("20261127T142503Z.pcap").exists());
        assert_eq!(
            enforced.after(),
            Usage {
                files: 1,
                bytes: 1000
            }
        );
    }

    #[test]
    fn under_budget_nothing_is_dropped_not_even_strays() {
        let (_dir, spool) = spool_with_ready(&[("20261127T142503Z.pcap", 100)]);
        let stray = spool.quarantine().join("not-a-pcap");
        std::fs::write(&stray, vec![0u8; 100]).unwrap();

        let enforced = SpoolBudget::new(1000).enforce(&spool, spool.ready_captures().unwrap());

        assert!(stray.exists());
        assert!(enforced.strays.is_empty() && enforced.captures.is_empty());
        assert_eq!(
            enforced.after(),
            Usage {
                files: 2,
                bytes: 200
            }
        );
    }

    #[test]
    fn a_capture_already_gone_is_not_counted_but_its_record_goes() {
        let (_dir, spool) = spool_with_ready(&[
            ("20261127T142501Z.pcap", 1000),
            ("20261127T142502Z.pcap", 1000),
        ]);
        let offered = spool.ready_captures().unwrap();
        // Uploaded and deleted between the listing and the drop.
        std::fs::remove_file(spool.ready().join("20261127T142501Z.pcap")).unwrap();
        let orphan = spool.resume_record("20261127T142501Z.pcap");
        std::fs::write(&orphan, b"{}").unwrap();

        let enforced = SpoolBudget::new(500).enforce(&spool, offered);

        assert_eq!(names(&enforced.captures), ["20261127T142502Z.pcap"]);
        assert!(!orphan.exists());
    }
}
