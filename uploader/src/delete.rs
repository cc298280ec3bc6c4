//! Deleting a capture from the spool after its upload was verified (the
//! budget's drops are `spool::budget`'s). The resume record goes with it.
//!
//! After an upload, the path is unlinked only if it still names the bytes
//! that were sent: the descriptor that was hashed is unchanged (size,
//! modification and change times) and the path still names that inode
//! (device and inode number). Otherwise the capture is hashed and sent
//! again: whatever is at the path was never confirmed by S3.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crate::hash::Stamp;
use crate::state;

/// Why an uploaded capture was not deleted.
#[derive(Debug, thiserror::Error)]
pub enum NotDeleted {
    #[error("{path} changed after it was hashed (written to, or replaced by another file)")]
    Changed { path: String },
    #[error("cannot delete {path}: {source}")]
    Io { path: String, source: io::Error },
}

/// Removes the capture, its resume record and its drop-count record. A
/// capture already gone is fine: someone else (an operator) removed it.
fn remove_capture(path: &Path, record: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    if let Some(counters) = spool::counters::record_of_ready_capture(path) {
        spool::counters::remove(&counters)?;
    }
    state::remove(record)
}

/// Removes an uploaded capture, if `path` still names the file `sent` as it
/// was when hashed (`hashed`); see the module documentation.
pub fn remove_uploaded(
    path: &Path,
    sent: &File,
    hashed: Option<Stamp>,
    record: &Path,
) -> Result<(), NotDeleted> {
    let io_error = |source| NotDeleted::Io {
        path: path.display().to_string(),
        source,
    };
    let changed = || NotDeleted::Changed {
        path: path.display().to_string(),
    };
    if hashed != Some(Stamp::of(sent).map_err(io_error)?) {
        return Err(changed());
    }
    let sent_meta = sent.metadata().map_err(io_error)?;
    match std::fs::symlink_metadata(path) {
        Ok(now) if (now.dev(), now.ino()) == (sent_meta.dev(), sent_meta.ino()) => {}
        Ok(_) => return Err(changed()),
        // Removed by someone else: nothing of ours left to delete.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(e)),
    }
    remove_capture(path, record).map_err(io_error)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt as _;

    use super::*;
    use crate::hash::hash_file;

    fn hashed_capture(dir: &Path) -> (std::path::PathBuf, File, Option<Stamp>) {
        let path = dir.join("20261127T142503Z.pcap");
        std::fs::write(&path, vec![7u8; 4096]).unwrap();
        let (file, digest) = hash_file(&path, None).unwrap();
        (path, file, digest.stamp)
    }

    #[test]
    fn an_unchanged_capture_is_deleted_with_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file, stamp) = hashed_capture(dir.path());
        let record = dir.path().join("record.json");
        std::fs::write(&record, b"{}").unwrap();
        remove_uploaded(&path, &file, stamp, &record).unwrap();
        assert!(!path.exists() && !record.exists());
    }

    #[test]
    fn an_uploaded_capture_takes_its_drop_count_record_with_it() {
        let root = tempfile::tempdir().unwrap();
        let spool = spool::SpoolLayout::new(root.path());
        spool.create_folders().unwrap();
        let (path, file, stamp) = hashed_capture(&spool.ready());
        let counted = spool.counters_record("20261127T142503Z.pcap");
        std::fs::write(&counted, b"dropped-by-kernel 0\n").unwrap();
        remove_uploaded(&path, &file, stamp, &root.path().join("r")).unwrap();
        assert!(!path.exists() && !counted.exists());
    }

    #[test]
    fn a_capture_appended_to_after_hashing_is_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file, stamp) = hashed_capture(dir.path());
        std::thread::sleep(std::time::Duration::from_millis(10));
        let writer = File::options().write(true).open(&path).unwrap();
        writer.write_all_at(b"late bytes", 4096).unwrap();
        let refused = remove_uploaded(&path, &file, stamp, &dir.path().join("r")).unwrap_err();
        assert!(matches!(refused, NotDeleted::Changed { .. }), "{refused}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4106);
    }

    #[test]
    fn a_capture_replaced_by_another_file_after_hashing_is_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file, stamp) = hashed_capture(dir.path());
        let other = dir.path().join("other");
        std::fs::write(&other, b"never uploaded").unwrap();
        std::fs::rename(&other, &path).unwrap();
        let refused = remove_uploaded(&path, &file, stamp, &dir.path().join("r")).unwrap_err();
        assert!(matches!(refused, NotDeleted::Changed { .. }), "{refused}");
        assert_eq!(std::fs::read(&path).unwrap(), b"never uploaded");
    }
}
