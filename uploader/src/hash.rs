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
    /// The flow index built in the same read (gzip JSON lines), when asked.
    pub index: Option<Vec<u8>>,
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
pub fn hash_file(
    path: &Path,
    part_size: Option<u64>,
    index_as: Option<&str>,
) -> std::io::Result<(File, FileDigest)> {
    let mut file = open_no_follow(path)?;
    let digest = hash_reader(&mut file, part_size, index_as)?;
    Ok((file, digest))
}

/// Hashes what `reader` yields; with `index_as` (the capture's object key),
/// also builds its flow index in the same pass.
pub fn hash_reader(
    reader: &mut impl Read,
    part_size: Option<u64>,
    index_as: Option<&str>,
) -> std::io::Result<FileDigest> {
    let mut whole = Sha256::new();
    let mut part = Sha256::new();
    let mut parts = Vec::new();
    let mut in_part: u64 = 0;
    let mut size: u64 = 0;
    let mut buffer = vec![0u8; BUFFER];
    let mut pcap = PcapCheck::new();
    let mut index = index_as.map(|key| flows::IndexWriter::new(key, Vec::new()));
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut chunk = &buffer[..n];
        whole.update(chunk);
        match index.as_mut() {
            Some(index) => pcap.feed_with(chunk, |record| index.add(record)),
            None => pcap.feed(chunk),
        }
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
        index: index
            .map(|index| index.finish().map(|(gz, _)| gz))
            .transpose()
            .map_err(std::io::Error::other)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_file_and_match_independent_hashes() {
        let data: Vec<u8> = (0..(3 * BUFFER + 123)).map(|i| (i % 251) as u8).collect();
        let part_size = (BUFFER + 7) as u64;
        let d = hash_reader(&mut data.as_slice(), Some(part_size), None).unwrap();
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
        let d = hash_reader(&mut data.as_slice(), Some(1024), None).unwrap();
        assert_eq!(d.parts.len(), 4);
    }

    #[test]
    fn the_hashing_read_also_indexes_flows_and_their_resets() {
        use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
        let frame = |from: [u8; 4], to: [u8; 4], ports: (u16, u16), rst: bool| {
            let mut builder = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
                .ipv4(from, to, 64)
                .tcp(ports.0, ports.1, 1, 1000);
            builder = if rst { builder.rst() } else { builder.syn() };
            let mut out = Vec::new();
            builder.write(&mut out, &[]).unwrap();
            out
        };
        let mut writer = PcapWriter::with_header(Vec::new(), PcapHeader::default()).unwrap();
        for (ms, data) in [
            (0, frame([10, 0, 0, 1], [10, 0, 0, 2], (40_000, 443), false)),
            (1, frame([10, 0, 0, 2], [10, 0, 0, 1], (443, 40_000), true)),
        ] {
            let len = u32::try_from(data.len()).unwrap();
            let packet = PcapPacket::new(std::time::Duration::from_millis(1_000 + ms), len, &data);
            writer.write_packet(&packet).unwrap();
        }
        let pcap = writer.into_writer();
        let d = hash_reader(&mut pcap.as_slice(), None, Some("k/x.pcap")).unwrap();
        assert_eq!(d.sha256, <[u8; 32]>::from(Sha256::digest(&pcap)));
        assert_eq!(d.pcap.packets, 2);
        let flows = flows::read_index(d.index.unwrap().as_slice()).unwrap();
        assert_eq!(flows.len(), 1, "{flows:?}");
        assert_eq!(flows[0].capture, "k/x.pcap");
        assert_eq!(flows[0].resets_dst + flows[0].resets_src, 1, "{flows:?}");
    }

    #[test]
    fn hex_is_what_sha256sum_prints() {
        let d = hash_reader(&mut &b"abc"[..], None, None).unwrap();
        assert_eq!(
            d.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(d.parts.is_empty());
    }
}
