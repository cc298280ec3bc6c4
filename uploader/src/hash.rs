//! SHA-256 of a capture, streamed from disk: of the whole file and, for a
//! multipart upload, of each part, in one pass with a fixed-size buffer.
//! The same pass checks the capture's pcap structure (the spool crate's
//! [`PcapCheck`]): whole records, possible lengths, first and last packet.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};
use spool::pcap::{PcapCheck, PcapSummary};

/// Read buffer: large enough to keep the SHA extensions busy, small enough
/// that memory stays flat.
const BUFFER: usize = 1 << 20;

pub type Sha256Digest = [u8; 32];

/// What we know of a file's content before uploading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    pub sha256: Sha256Digest,
    /// One digest per `part_size` bytes; empty for single-request uploads.
    pub parts: Vec<Sha256Digest>,
    pub part_size: u64,
    /// What the pcap check found in the same read.
    pub pcap: PcapSummary,
}

impl FileDigest {
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Opens a capture for reading without following a symlink.
pub fn open_no_follow(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
}

/// Hashes `path`; with `part_size`, also each part of that size. Returns
/// the open file with its digest: the upload sends from this descriptor, so
/// what is sent is what was hashed even if the path is replaced meanwhile.
/// Blocking: call from `spawn_blocking`.
pub fn hash_file(path: &Path, part_size: Option<u64>) -> std::io::Result<(File, FileDigest)> {
    let mut file = open_no_follow(path)?;
    let digest = hash_reader(&mut file, part_size)?;
    Ok((file, digest))
}

pub fn hash_reader(reader: &mut impl Read, part_size: Option<u64>) -> std::io::Result<FileDigest> {
    let mut whole = Sha256::new();
    let mut part = Sha256::new();
    let mut parts = Vec::new();
    let mut in_part: u64 = 0;
    let mut size: u64 = 0;
    let mut buffer = vec![0u8; BUFFER];
    let mut pcap = PcapCheck::new();
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut chunk = &buffer[..n];
        whole.update(chunk);
        pcap.feed(chunk);
        size += n as u64;
        if let Some(part_size) = part_size {
            while !chunk.is_empty() {
                let room = usize::try_from(part_size - in_part).unwrap_or(usize::MAX);
                let take = room.min(chunk.len());
                part.update(&chunk[..take]);
                in_part += take as u64;
                chunk = &chunk[take..];
                if in_part == part_size {
                    parts.push(part.finalize_reset().into());
                    in_part = 0;
                }
            }
        }
    }
    if part_size.is_some() && (in_part > 0 || parts.is_empty()) {
        parts.push(part.finalize().into());
    }
    Ok(FileDigest {
        size,
        sha256: whole.finalize().into(),
        parts,
        part_size: part_size.unwrap_or(size),
        pcap: pcap.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_file_and_match_independent_hashes() {
        let data: Vec<u8> = (0..(3 * BUFFER + 123)).map(|i| (i % 251) as u8).collect();
        let part_size = (BUFFER + 7) as u64;
        let d = hash_reader(&mut data.as_slice(), Some(part_size)).unwrap();
        assert_eq!(d.size, data.len() as u64);
        assert_eq!(d.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
        let expected: Vec<Sha256Digest> = data
            .chunks(part_size as usize)
            .map(|c| Sha256::digest(c).into())
            .collect();
        assert_eq!(d.parts, expected);
    }

    #[test]
    fn exact_multiple_has_no_empty_trailing_part() {
        let data = vec![7u8; 4096];
        let d = hash_reader(&mut data.as_slice(), Some(1024)).unwrap();
        assert_eq!(d.parts.len(), 4);
    }

    #[test]
    fn hex_is_what_sha256sum_prints() {
        let d = hash_reader(&mut &b"abc"[..], None).unwrap();
        assert_eq!(
            d.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(d.parts.is_empty());
    }
}
