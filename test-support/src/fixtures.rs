//! A spool in a temporary folder, and synthetic captures to put in it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use sha2::{Digest, Sha256};
use spool::SpoolLayout;

/// A spool root in a fresh temporary folder; the folder names are the
/// spool crate's.
#[derive(Debug)]
pub struct Spool {
    pub dir: tempfile::TempDir,
}

impl Spool {
    /// An empty spool root, as the launcher finds it: it makes the folders.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // tcpdump drops to its own user, which must reach the spool.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }

    /// A spool with `active/` and `ready/`, as the launcher leaves it for
    /// the uploader.
    pub fn with_capture_folders() -> Self {
        let spool = Self::new();
        std::fs::create_dir(spool.active()).unwrap();
        std::fs::create_dir(spool.ready()).unwrap();
        spool
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn layout(&self) -> SpoolLayout {
        SpoolLayout::new(self.root())
    }

    pub fn active(&self) -> PathBuf {
        self.layout().active()
    }

    pub fn ready(&self) -> PathBuf {
        self.layout().ready()
    }

    /// The files in `folder`, sorted; none if it does not exist.
    pub fn files(folder: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(folder) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
    }

    /// Writes a synthetic pcap of about `size` bytes into `active/`, then
    /// renames it into `ready/` like the launcher; returns its bytes.
    pub fn add(&self, name: &str, size: usize) -> Vec<u8> {
        let bytes = pcap_bytes(size, name);
        let active = self.active().join(name);
        std::fs::write(&active, &bytes).unwrap();
        std::fs::rename(&active, self.ready().join(name)).unwrap();
        bytes
    }

    /// The names in `ready/`, sorted.
    pub fn ready_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.ready())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Default for Spool {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes in each synthetic record's packet.
const RECORD: usize = 1024;

/// A valid pcap of at least `size` bytes: little-endian, Ethernet link
/// type, microseconds, records of 1024 bytes (16 + 1024 in the file) with
/// `ts_sec` 1, 2, 3… and pseudo-random payloads seeded by `seed` (so equal
/// names give equal bytes).
pub fn pcap_bytes(size: usize, seed: &str) -> Vec<u8> {
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        endianness: pcap_file::Endianness::Little,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(Vec::with_capacity(size + 2048), header).unwrap();
    let mut state: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
    let mut payload = vec![0u8; RECORD];
    let mut written = 24;
    let mut ts = 0;
    while written < size {
        ts += 1;
        for chunk in payload.chunks_mut(32) {
            state = Sha256::digest(state).into();
            chunk.copy_from_slice(&state);
        }
        let packet = PcapPacket::new(Duration::from_secs(ts), RECORD as u32, &payload);
        written += writer.write_packet(&packet).unwrap();
    }
    writer.into_writer()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    bucket::hex(&Sha256::digest(bytes))
}

/// A capture name for a start time `ago` before now.
pub fn name_started_ago(ago: Duration) -> (String, chrono::DateTime<chrono::Utc>) {
    let start = chrono::Utc::now() - chrono::Duration::from_std(ago).unwrap();
    (format!("{}", start.format("%Y%m%dT%H%M%SZ.pcap")), start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_captures_keep_their_layout() {
        let bytes = pcap_bytes(3000, "x");
        assert_eq!(bytes.len(), 24 + 3 * (16 + RECORD));
        assert_eq!(bytes[..4], 0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(bytes[20..24], 1u32.to_le_bytes(), "Ethernet");
        assert_eq!(bytes[24..28], 1u32.to_le_bytes(), "ts_sec 1");
        let second = 24 + 16 + RECORD;
        assert_eq!(bytes[second..second + 4], 2u32.to_le_bytes(), "ts_sec 2");
        assert_eq!(bytes, pcap_bytes(3000, "x"));
    }
}
