//! SHA-256 of a capture, streamed from disk with a fixed-size buffer. The
//! same pass checks the capture's pcap structure (the spool crate's
//! [`PcapCheck`]: whole records, possible lengths, first and last packet)
//! and builds its flow index. The parts of a multipart upload are hashed
//! later, one by one, just before each is sent ([`hash_range`]), so that
//! sending starts after one pass over the file, not two.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
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
    /// What the pcap check found in the same read.
    pub pcap: PcapSummary,
    /// The flow index built in the same read, or why there is none.
    pub index: FlowIndex,
    /// The file's size and change times when it was hashed (see [`Stamp`]).
    pub stamp: Option<Stamp>,
}

/// The flow index of the inspecting read: one outcome, so that "built"
/// and "skipped" can never both be claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowIndex {
    /// `FLOW_INDEX=false`, or a read that only hashes.
    NotAsked,
    /// Gzip JSON lines, shared (not copied) by each try of its upload: it
    /// can be tens of MiB.
    Built(bytes::Bytes),
    /// Why none was built although one was asked for (it passed its size
    /// limit, or could not be written): the capture is uploaded without
    /// one, and its metadata says why.
    Skipped(String),
}

impl FileDigest {
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// Size and modification/change times of an open file. Parts hashed after
/// the whole-file pass describe the same bytes only if these did not move:
/// a capture in `ready/` is never written again, but the uploader checks
/// rather than assumes before it completes an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    size: u64,
    modified_ns: (i64, i64),
    changed_ns: (i64, i64),
}

impl Stamp {
    pub fn of(file: &File) -> std::io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            size: meta.len(),
            modified_ns: (meta.mtime(), meta.mtime_nsec()),
            changed_ns: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

pub use bucket::hex;

pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Opens a capture for reading: regular files only, symlinks never
/// followed, FIFOs never waited on (see [`crate::find::open_capture`]).
pub fn open_no_follow(path: &Path) -> std::io::Result<File> {
    crate::find::open_capture(path)
}

/// Hashes `path` (and, with `index_as`, indexes its flows). Returns the open
/// file with its digest: the upload sends from this descriptor, so what is
/// sent is what was hashed even if the path is replaced meanwhile.
/// Blocking: call from `spawn_blocking`.
pub fn hash_file(path: &Path, index_as: Option<&str>) -> std::io::Result<(File, FileDigest)> {
    let mut file = open_no_follow(path)?;
    let stamp = Stamp::of(&file)?;
    let mut digest = hash_reader(&mut file, index_as)?;
    digest.stamp = Some(stamp);
    Ok((file, digest))
}

/// Hashes what `reader` yields; with `index_as` (the capture's object key),
/// also builds its flow index in the same pass.
pub fn hash_reader(reader: &mut impl Read, index_as: Option<&str>) -> std::io::Result<FileDigest> {
    hash_and_index(reader, index_as, flows::MAX_INDEX_BYTES)
}

/// [`hash_reader`], with the index given up past `max_index_bytes`
/// (compressed): the table holds a bounded number of flows, and the index
/// is held in memory until it is sent, so both are bounded.
fn hash_and_index(
    reader: &mut impl Read,
    index_as: Option<&str>,
    max_index_bytes: u64,
) -> std::io::Result<FileDigest> {
    let mut whole = Sha256::new();
    let mut size: u64 = 0;
    let mut buffer = vec![0u8; BUFFER];
    let mut pcap = PcapCheck::new();
    // Room for the largest index up front: address space only until
    // written, and never moved while it grows (growing a Vec copies it, and
    // the allocator may keep both copies resident).
    let room = usize::try_from(max_index_bytes).unwrap_or(usize::MAX);
    let mut index = index_as.map(|key| {
        flows::IndexWriter::new(key, Vec::with_capacity(room)).max_bytes(max_index_bytes)
    });
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buffer[..n];
        whole.update(chunk);
        match index.as_mut() {
            Some(index) => pcap.feed_with(chunk, |record| index.add(record)),
            None => pcap.feed(chunk),
        }
        size += n as u64;
    }
    // An index that cannot be built within its limits is skipped, never a
    // reason to hold the capture back: it would be retried for ever.
    let index = match index.map(flows::IndexWriter::finish) {
        None => FlowIndex::NotAsked,
        Some(Ok((gz, _))) => FlowIndex::Built(bytes::Bytes::from(gz)),
        Some(Err(e)) => FlowIndex::Skipped(e.to_string()),
    };
    Ok(FileDigest {
        size,
        sha256: whole.finalize().into(),
        pcap: pcap.finish(),
        index,
        stamp: None,
    })
}

/// SHA-256 of `len` bytes of `file` from `offset` (one part of a multipart
/// upload), read with positioned reads: parts are hashed concurrently from
/// the same descriptor. A file shorter than the range is an error.
/// Blocking: call from `spawn_blocking`.
pub fn hash_range(file: &File, offset: u64, len: u64) -> std::io::Result<Sha256Digest> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; usize::try_from(len).unwrap_or(BUFFER).clamp(1, BUFFER)];
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from(len - done)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        let n = match file.read_at(&mut buffer[..want], offset + done) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file ended {done} bytes into a part of {len}"),
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        done += n as u64;
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_file_and_match_independent_hashes() {
        let data: Vec<u8> = (0..(3 * BUFFER + 123)).map(|i| (i % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("20261127T142503Z.pcap");
        std::fs::write(&path, &data).unwrap();
        let (file, d) = hash_file(&path, None).unwrap();
        assert_eq!(d.size, data.len() as u64);
        assert_eq!(d.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
        let part_size = BUFFER + 7;
        for (i, part) in data.chunks(part_size).enumerate() {
            let offset = (i * part_size) as u64;
            let got = hash_range(&file, offset, part.len() as u64).unwrap();
            assert_eq!(got, <[u8; 32]>::from(Sha256::digest(part)), "part {i}");
        }
    }

    #[test]
    fn a_range_past_the_end_of_the_file_is_an_error_not_a_short_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("20261127T142503Z.pcap");
        std::fs::write(&path, vec![1u8; 1000]).unwrap();
        let (file, _) = hash_file(&path, None).unwrap();
        let e = hash_range(&file, 500, 1000).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }

    #[test]
    fn a_write_after_hashing_moves_the_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("20261127T142503Z.pcap");
        std::fs::write(&path, vec![1u8; 1000]).unwrap();
        let (file, d) = hash_file(&path, None).unwrap();
        assert_eq!(Stamp::of(&file).unwrap(), d.stamp.unwrap());
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(b"changed", 10)
            .unwrap();
        assert_ne!(Stamp::of(&file).unwrap(), d.stamp.unwrap());
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
        let d = hash_reader(&mut pcap.as_slice(), Some("k/x.pcap")).unwrap();
        assert_eq!(d.sha256, <[u8; 32]>::from(Sha256::digest(&pcap)));
        assert_eq!(d.pcap.packets, 2);
        let FlowIndex::Built(gz) = d.index else {
            panic!("no index: {:?}", d.index)
        };
        let flows = flows::read_index(gz.as_ref()).unwrap();
        assert_eq!(flows.len(), 1, "{flows:?}");
        assert_eq!(flows[0].capture, "k/x.pcap");
        assert_eq!(flows[0].resets_dst + flows[0].resets_src, 1, "{flows:?}");
    }

    /// Issue 20, item 2: an index that cannot be built within its bounds
    /// never holds the capture back.
    #[test]
    fn a_capture_whose_index_passes_its_size_limit_is_hashed_without_one_and_says_why() {
        let mut pcap = Vec::new();
        test_support::synthetic::write_many_flows(
            &mut pcap,
            5_000,
            test_support::synthetic::FlowShape::Udp,
            1_796_000_000,
            60,
        )
        .unwrap();
        let d = hash_and_index(&mut pcap.as_slice(), Some("k/x.pcap"), 1_000).unwrap();
        assert_eq!(d.sha256, <[u8; 32]>::from(Sha256::digest(&pcap)));
        assert_eq!(d.pcap.packets, 5_000);
        let FlowIndex::Skipped(why) = d.index else {
            panic!("not skipped: {:?}", d.index)
        };
        assert!(why.contains("passed 1000 bytes compressed"), "{why}");
        let whole = hash_reader(&mut pcap.as_slice(), Some("k/x.pcap")).unwrap();
        assert!(
            matches!(whole.index, FlowIndex::Built(_)),
            "{:?}",
            whole.index
        );
    }

    #[test]
    fn hex_is_what_sha256sum_prints() {
        let d = hash_reader(&mut &b"abc"[..], None).unwrap();
        assert_eq!(
            d.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
