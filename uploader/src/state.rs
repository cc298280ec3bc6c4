//! The resume record of a multipart upload in progress:
//! `<spool>/state/<capture file name>.json`.
//!
//! It is a cache of what S3 holds, never the truth: the parts themselves are
//! asked of S3 with ListParts on resume. A record that cannot be read, is of
//! another version or describes other content means "start from empty". It
//! is written to a temporary file, fsynced, renamed into place and the folder
//! fsynced, so a crash leaves either the old record or the new one.
//!
//! The spool is shared with another container, so a record is read as
//! untrusted input: never through a symlink, only a regular file, at most
//! [`MAX_RECORD_BYTES`]. Reads and writes run off the async runtime.

use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;

/// A real record is a few hundred bytes (an upload id, a key of at most
/// 1,024 bytes); anything much larger is not one.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024;

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
    spool::resume_record_path(state_dir, file_name)
}

/// Why a record was not used.
#[derive(Debug, thiserror::Error)]
pub enum RecordRefused {
    #[error("it cannot be opened (a symlink is never followed): {0}")]
    Open(std::io::Error),
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("it is larger than {MAX_RECORD_BYTES} bytes")]
    TooLarge,
    #[error("it cannot be read: {0}")]
    Read(std::io::Error),
    #[error("it is not a version {VERSION} record: {0}")]
    Invalid(String),
}

/// Reads a record off the async runtime; anything unusable is `None`
/// (start from empty), with a warning naming why.
pub async fn load(path: &Path) -> Option<UploadRecord> {
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || read_record(&owned))
        .await
        .map_err(|e| RecordRefused::Read(std::io::Error::other(e)));
    match read.and_then(|r| r) {
        Ok(record) => Some(record),
        Err(RecordRefused::Open(e)) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(why) => {
            tracing::warn!(path = %path.display(), reason = %why, "ignoring unusable resume record; the upload starts from empty");
            None
        }
    }
}

/// Reads and parses a record (blocking): a regular file, not followed if a
/// symlink, not waited on if a FIFO, at most [`MAX_RECORD_BYTES`].
pub fn read_record(path: &Path) -> Result<UploadRecord, RecordRefused> {
    use nix::fcntl::OFlag;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
        .open(path)
        .map_err(RecordRefused::Open)?;
    let meta = file.metadata().map_err(RecordRefused::Read)?;
    if !meta.file_type().is_file() {
        return Err(RecordRefused::NotRegular(crate::find::describe(
            meta.file_type(),
        )));
    }
    if meta.len() > MAX_RECORD_BYTES {
        return Err(RecordRefused::TooLarge);
    }
    let mut bytes = Vec::new();
    // The size checked above can grow meanwhile: the read is capped too.
    file.take(MAX_RECORD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(RecordRefused::Read)?;
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(RecordRefused::TooLarge);
    }
    match serde_json::from_slice::<UploadRecord>(&bytes) {
        Ok(record) if record.version == VERSION => Ok(record),
        Ok(record) => Err(RecordRefused::Invalid(format!(
            "version {}",
            record.version
        ))),
        Err(e) => Err(RecordRefused::Invalid(e.to_string())),
    }
}

/// Writes a record atomically and durably, off the async runtime.
pub async fn save(path: &Path, record: &UploadRecord) -> std::io::Result<()> {
    let (path, record) = (path.to_owned(), record.clone());
    tokio::task::spawn_blocking(move || save_blocking(&path, &record))
        .await
        .map_err(std::io::Error::other)?
}

/// Writes a record atomically and durably (blocking). The temporary file is
/// created new (`O_EXCL`), so a symlink planted under its name is replaced,
/// never written through.
pub fn save_blocking(path: &Path, record: &UploadRecord) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.tmp"));
    let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    remove(&temp)?;
    {
        let mut file = File::options().write(true).create_new(true).open(&temp)?;
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
        save_blocking(&path, &record).unwrap();
        assert_eq!(read_record(&path).unwrap(), record);
        assert!(record.matches("b", "k", 10, 5, "ab"));
        assert!(!record.matches("b", "k", 10, 6, "ab"));
        assert!(
            fs::read_dir(dir.path()).unwrap().count() == 1,
            "temp file left"
        );

        fs::write(&path, b"{not json").unwrap();
        assert!(matches!(read_record(&path), Err(RecordRefused::Invalid(_))));
        fs::write(&path, br#"{"version":99}"#).unwrap();
        assert!(read_record(&path).is_err());
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert!(read_record(&path).is_err());
    }

    #[tokio::test]
    async fn an_oversized_resume_record_is_ignored_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = record_path(dir.path(), "20261127T142503Z.pcap");
        let record = UploadRecord::new("b", "k", "id", 10, 5, "ab");
        // Valid JSON, padded past the cap with whitespace.
        let mut json = serde_json::to_vec(&record).unwrap();
        json.resize(MAX_RECORD_BYTES as usize + 10, b' ');
        fs::write(&path, &json).unwrap();
        let why = read_record(&path).unwrap_err();
        assert!(matches!(why, RecordRefused::TooLarge), "{why}");
        assert!(why.to_string().contains("larger than 65536 bytes"), "{why}");
        assert_eq!(load(&path).await, None);
    }

    #[tokio::test]
    async fn a_symlinked_resume_record_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere.json");
        let record = UploadRecord::new("b", "k", "id", 10, 5, "ab");
        save_blocking(&elsewhere, &record).unwrap();
        let path = record_path(dir.path(), "20261127T142503Z.pcap");
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let why = read_record(&path).unwrap_err();
        assert!(matches!(why, RecordRefused::Open(_)), "{why}");
        assert_eq!(load(&path).await, None);
    }

    #[tokio::test]
    async fn a_fifo_as_resume_record_does_not_block_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = record_path(dir.path(), "20261127T142503Z.pcap");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let loaded = tokio::time::timeout(std::time::Duration::from_secs(5), load(&path))
            .await
            .expect("reading a FIFO record blocked");
        assert_eq!(loaded, None);
        assert!(matches!(
            read_record(&path),
            Err(RecordRefused::NotRegular("a FIFO"))
        ));
    }

    #[test]
    fn a_symlink_planted_at_the_temporary_name_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"untouched").unwrap();
        let path = record_path(dir.path(), "20261127T142503Z.pcap");
        std::os::unix::fs::symlink(&target, dir.path().join(".20261127T142503Z.pcap.json.tmp"))
            .unwrap();
        save_blocking(&path, &UploadRecord::new("b", "k", "id", 10, 5, "ab")).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"untouched");
        assert!(read_record(&path).is_ok());
    }
}
