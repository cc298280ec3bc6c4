//! Shipping the identity journal: every segment the journal container
//! wrote into the spool's `journal/` goes to
//! `<prefix>journal/node=…/date=…/hour=…/<segment>` (the `bucket` crate's
//! `journal_keys`), with its SHA-256 checked by S3 through the same
//! [`Sender`](crate::upload::Sender) as the captures, and is deleted from
//! the node only once the store confirmed it. Failures go to the one retry
//! decision ([`RetryPolicy::decide`](crate::retry::RetryPolicy::decide));
//! a segment whose turn failed waits for the next pass, in the spool.
//!
//! This runs beside the capture pipeline, never in it: a journal segment
//! takes a request slot for one small PUT, and a journal that cannot be
//! shipped never holds a capture back.

use std::path::{Path, PathBuf};

use bucket::journal_keys::{journal_key, parse_journal_file_name};
use chrono::{DateTime, Utc};
use spool::SpoolLayout;

use crate::failure::{FailureKind, UploadError};
use crate::ship::Shipper;

/// Larger than any segment the journal writes (a segment holds at most its
/// record cap of ended intervals and the live ones, gzip-compressed); a
/// bigger file in `journal/` is not one of its segments and is left alone.
const MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// A segment waiting in `journal/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Segment {
    pub start: DateTime<Utc>,
    pub name: String,
    pub path: PathBuf,
}

/// The segments in `journal/`, oldest first: regular files named as the
/// journal names them (hidden temporary files, symlinks and foreign names
/// are left alone). A spool without `journal/` has none.
pub fn pending(spool: &SpoolLayout) -> Vec<Segment> {
    let dir = spool.journal();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<Segment> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_owned();
            let start = parse_journal_file_name(&name)?;
            let meta = std::fs::symlink_metadata(entry.path()).ok()?;
            meta.is_file().then(|| Segment {
                start,
                path: entry.path(),
                name,
            })
        })
        .collect();
    found.sort();
    found
}

/// Ships every segment waiting now, oldest first; returns the names of
/// those left in the spool (to be tried again on the next pass). A pass
/// ends at the first segment that could not be shipped: the others would
/// meet the same store (an outage, a missing permission), and a backlog
/// must not become a request per segment per pass.
pub async fn ship_pending(shipper: &Shipper) -> Vec<String> {
    let mut left = Vec::new();
    let mut failed = false;
    for segment in pending(&shipper.config.spool) {
        if failed {
            left.push(format!("journal/{}", segment.name));
            continue;
        }
        if let Err(error) = ship(shipper, &segment).await
            && error.kind != FailureKind::Gone
        {
            tracing::warn!(file = segment.name, kind = %error.kind, error = %error.detail, "journal segment not shipped; it and the later ones stay in journal/ for the next pass");
            left.push(format!("journal/{}", segment.name));
            failed = true;
        }
    }
    left
}

/// One segment: read, upload (retried as the policy says), delete.
async fn ship(shipper: &Shipper, segment: &Segment) -> Result<(), UploadError> {
    let key = journal_key(
        shipper.config.key_template.static_prefix(),
        &shipper.key_context.node,
        segment.start,
        &segment.name,
    );
    let mut attempt = 0u32;
    loop {
        let result = match read(&segment.path) {
            Ok(bytes) => shipper
                .sender
                .put_journal(&key, &bytes, &shipper.key_context.node)
                .await
                .map(|verified| (verified, bytes.len())),
            Err(e) => Err(e),
        };
        let error = match result {
            Ok((verified, bytes)) => {
                remove(&segment.path)?;
                tracing::info!(
                    file = segment.name,
                    key,
                    bytes,
                    ?verified,
                    "journal segment uploaded, verified and deleted"
                );
                return Ok(());
            }
            Err(error) => error,
        };
        // The segment is read again on every attempt.
        shipper
            .again_or_give_up(&mut attempt, &key, "journal upload", error)
            .await?;
    }
}

/// The segment's bytes, never following a symlink swapped in.
fn read(path: &Path) -> Result<Vec<u8>, UploadError> {
    use std::io::Read as _;
    let file = crate::find::open_capture(path).map_err(|e| io_error(path, &e))?;
    let size = file.metadata().map_err(|e| io_error(path, &e))?.len();
    if size > MAX_SEGMENT_BYTES {
        return Err(UploadError::new(
            FailureKind::LocalIo,
            format!(
                "{} is {size} bytes, more than a journal segment can be ({MAX_SEGMENT_BYTES}); it is not uploaded: remove it",
                path.display()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_SEGMENT_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, &e))?;
    Ok(bytes)
}

fn remove(path: &Path) -> Result<(), UploadError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(UploadError::new(
            FailureKind::LocalIo,
            format!("uploaded but cannot delete {}: {e}", path.display()),
        )),
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> UploadError {
    let kind = if e.kind() == std::io::ErrorKind::NotFound {
        FailureKind::Gone
    } else {
        FailureKind::LocalIo
    };
    UploadError::new(kind, format!("reading {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_segments_named_by_the_journal_are_pending_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
        let journal = spool.journal();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"not ours").unwrap();
        std::fs::write(journal.join("20261127T142600.000Z.jsonl.gz"), b"b").unwrap();
        std::fs::write(journal.join("20261127T142500.000Z.jsonl.gz"), b"a").unwrap();
        std::fs::write(journal.join(".20261127T142700.000Z.jsonl.gz.tmp"), b"tmp").unwrap();
        std::fs::write(journal.join("notes.txt"), b"junk").unwrap();
        std::os::unix::fs::symlink(&outside, journal.join("20261127T142400.000Z.jsonl.gz"))
            .unwrap();
        let names: Vec<String> = pending(&spool).into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "20261127T142500.000Z.jsonl.gz",
                "20261127T142600.000Z.jsonl.gz"
            ]
        );
    }
}
