//! The resume record of a multipart upload in progress:
//! `<spool>/state/<capture file name>.json`.
//!
//! It is a cache of what S3 holds, never the truth: the parts themselves are
//! asked of S3 with ListParts on resume. A record that cannot be read, is of
//! another version or describes other content means "start from empty". It
//! is written to a temporary file, fsynced, renamed into place and the folder
//! fsynced, so a crash leaves either the old record or the new one.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub version: u32,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub size: u64,
    pub part_size: u64,
    /// Hex SHA-256 of the whole file.
    pub sha256: String,
}

impl UploadRecord {
    pub fn new(
        bucket: &str,
        key: &str,
        upload_id: &str,
        size: u64,
        part_size: u64,
        sha256: &str,
    ) -> Self {
        Self {
            version: VERSION,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            size,
            part_size,
            sha256: sha256.to_owned(),
        }
    }

    /// Whether this record describes an upload of exactly this content to
    /// exactly this place.
    pub fn matches(
        &self,
        bucket: &str,
        key: &str,
        size: u64,
        part_size: u64,
        sha256: &str,
    ) -> bool {
        self.version == VERSION
            && self.bucket == bucket
            && self.key == key
            && self.size == size
            && self.part_size == part_size
            && self.sha256 == sha256
    }
}

/// The record path of one capture.
pub fn record_path(state_dir: &Path, file_name: &str) -> PathBuf {
    state_dir.join(format!("{file_name}.json"))
}

/// Reads a record; anything unreadable is `None` (start from empty).
pub fn load(path: &Path) -> Option<UploadRecord> {
    let bytes = fs::read(path).ok()?;
    match serde_json::from_slice::<UploadRecord>(&bytes) {
        Ok(record) if record.version == VERSION => Some(record),
        Ok(_) | Err(_) => {
            tracing::warn!(path = %path.display(), "ignoring unreadable resume record");
            None
        }
    }
}

/// Writes a record atomically and durably.
pub fn save(path: &Path, record: &UploadRecord) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.tmp"));
    let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    {
        let mut file = File::create(&temp)?;
        file.write_all(&json)?;
        file.sync_all()?;
    }
    fs::rename(&temp, path)?;
    File::open(dir)?.sync_all()
}

/// Removes a record; a missing one is fine.
pub fn remove(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_unreadable_means_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = record_path(dir.path(), "20261127T142503Z.pcap");
        let record = UploadRecord::new("b", "k", "id", 10, 5, "ab");
        save(&path, &record).unwrap();
        assert_eq!(load(&path), Some(record.clone()));
        assert!(record.matches("b", "k", 10, 5, "ab"));
        assert!(!record.matches("b", "k", 10, 6, "ab"));
        assert!(
            fs::read_dir(dir.path()).unwrap().count() == 1,
            "temp file left"
        );

        fs::write(&path, b"{not json").unwrap();
        assert_eq!(load(&path), None);
        fs::write(&path, br#"{"version":99}"#).unwrap();
        assert_eq!(load(&path), None);
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert_eq!(load(&path), None);
    }
}
