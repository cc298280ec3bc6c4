//! What a whole capture is: a pcap header, then records whose lengths are
//! possible for that header. One streaming check, shared by the launcher
//! (trimming a file a killed tcpdump left) and the uploader (checking every
//! capture in the same read that hashes it).
//!
//! The global header is read by `pcap-file`. Record headers are checked here
//! before their bodies are awaited: `pcap-file`'s parser asks for a record's
//! whole body before it looks at its length, so a garbage length (524,288
//! bytes, or 4 GiB) would make a reader buffer up to the end of the file.
//! Here a record whose captured length exceeds the file's snaplen or the
//! packet's original length is damage at a known offset, found in constant
//! memory (at most one record is ever held).

use std::time::Duration;

use pcap_file::pcap::PcapHeader;
use pcap_file::{Endianness, PcapError, TsResolution};

/// Length of the pcap global header.
pub const HEADER_LEN: usize = 24;
/// Length of a record header.
pub const RECORD_HEADER_LEN: usize = 16;
/// Largest record accepted whatever the header's snaplen says (tcpdump's
/// own maximum is 262,144): keeps memory bounded for a garbage header.
pub const MAX_RECORD_LEN: u32 = 1 << 20;

/// Where and why a capture stops being a valid pcap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the first byte that is not part of a whole record.
    pub offset: u64,
    pub kind: DamageKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// The first bytes are not a pcap header.
    NotPcap,
    /// The file ends before its pcap header does.
    NoHeader,
    /// A record header claims a captured length larger than the file's
    /// snaplen or than the packet's original length.
    ImpossibleRecord { captured: u32, original: u32 },
    /// The file ends inside a record (a torn tail).
    Truncated,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            DamageKind::NotPcap => write!(f, "not a pcap file (no pcap header at offset 0)"),
            DamageKind::NoHeader => {
                write!(f, "ends at byte {} inside the pcap header", self.offset)
            }
            DamageKind::ImpossibleRecord { captured, original } => write!(
                f,
                "impossible record at byte {}: {captured} bytes captured of a {original}-byte packet",
                self.offset
            ),
            DamageKind::Truncated => write!(f, "ends inside the record at byte {}", self.offset),
        }
    }
}

/// What a whole read of a capture found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PcapSummary {
    /// Whole, plausible records before any damage.
    pub packets: u64,
    /// Timestamps of the first and last of them, since the Unix epoch.
    pub first_packet: Option<Duration>,
    pub last_packet: Option<Duration>,
    /// End of the last whole record (the length a trimmed file keeps).
    pub whole_bytes: u64,
    /// Link type from the header (1 Ethernet, 113 Linux cooked, …).
    pub link_type: Option<u32>,
    pub damage: Option<Damage>,
}

/// One whole record, as handed to [`PcapCheck::feed_with`]'s callback.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Link type from the file's header (1 Ethernet, 113 Linux cooked, …).
    pub link_type: u32,
    /// Timestamp since the Unix epoch.
    pub at: Duration,
    /// The packet's length on the wire (`data` may be shorter: snaplen).
    pub original_len: u32,
    /// The captured bytes.
    pub data: &'a [u8],
}

/// Checks a capture fed to it in chunks of any size.
#[derive(Debug)]
pub struct PcapCheck {
    header: Option<PcapHeader>,
    /// A unit (the header, or one record) split across chunks.
    carry: Vec<u8>,
    /// Bytes consumed so far.
    offset: u64,
    summary: PcapSummary,
}

impl Default for PcapCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl PcapCheck {
    pub fn new() -> Self {
        Self {
            header: None,
            carry: Vec::new(),
            offset: 0,
            summary: PcapSummary::default(),
        }
    }

    /// Whether damage was found (later input is ignored).
    pub fn is_damaged(&self) -> bool {
        self.summary.damage.is_some()
    }

    /// Consumes the next bytes of the capture.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.feed_with(chunk, |_| {});
    }

    /// Consumes the next bytes of the capture and hands each whole record to
    /// `on_record`, in file order: a reader that needs the packets (the flow
    /// index) gets them from the same read that checks and hashes the file.
    pub fn feed_with(&mut self, mut chunk: &[u8], mut on_record: impl FnMut(Record<'_>)) {
        while !chunk.is_empty() && !self.is_damaged() {
            if self.carry.is_empty() {
                match self.unit_len(chunk) {
                    Some(Ok(len)) if len <= chunk.len() => {
                        self.take_unit(&chunk[..len], &mut on_record);
                        chunk = &chunk[len..];
                    }
                    Some(Err(damage)) => self.summary.damage = Some(damage),
                    // Incomplete: keep what there is for the next chunk.
                    _ => {
                        self.carry.extend_from_slice(chunk);
                        return;
                    }
                }
            } else {
                // Complete the carried unit with as few bytes as it needs.
                let need = match self.unit_len(&self.carry) {
                    Some(Ok(len)) => len,
                    Some(Err(damage)) => {
                        self.summary.damage = Some(damage);
                        return;
                    }
                    None => self.min_prefix(),
                };
                let take = need.saturating_sub(self.carry.len()).min(chunk.len());
                self.carry.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                match self.unit_len(&self.carry) {
                    Some(Ok(len)) if len <= self.carry.len() => {
                        let unit = std::mem::take(&mut self.carry);
                        self.take_unit(&unit, &mut on_record);
                        self.carry = unit;
                        self.carry.clear();
                    }
                    Some(Err(damage)) => self.summary.damage = Some(damage),
                    _ => {}
                }
            }
        }
    }

    /// Ends the check: a unit still incomplete is a torn tail.
    pub fn finish(mut self) -> PcapSummary {
        if self.summary.damage.is_none() {
            if self.header.is_none() {
                self.summary.damage = Some(Damage {
                    offset: 0,
                    kind: DamageKind::NoHeader,
                });
            } else if !self.carry.is_empty() {
                self.summary.damage = Some(Damage {
                    offset: self.offset,
                    kind: DamageKind::Truncated,
                });
            }
        }
        self.summary
    }

    /// Bytes needed before a unit's length is known.
    fn min_prefix(&self) -> usize {
        if self.header.is_none() {
            HEADER_LEN
        } else {
            RECORD_HEADER_LEN
        }
    }

    /// The length of the unit starting at `bytes`: `None` until enough is
    /// known, an error when the unit is impossible.
    fn unit_len(&self, bytes: &[u8]) -> Option<Result<usize, Damage>> {
        let Some(header) = self.header else {
            if bytes.len() < HEADER_LEN {
                // A wrong magic number is known from 4 bytes on.
                if bytes.len() >= 4 && !is_pcap_magic(&bytes[..4]) {
                    return Some(Err(self.damage(DamageKind::NotPcap)));
                }
                return None;
            }
            return Some(match PcapHeader::from_slice(bytes) {
                Ok(_) => Ok(HEADER_LEN),
                Err(_) => Err(self.damage(DamageKind::NotPcap)),
            });
        };
        if bytes.len() < RECORD_HEADER_LEN {
            return None;
        }
        let field = |at: usize| {
            let raw = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
            match header.endianness {
                Endianness::Big => u32::from_be_bytes(raw),
                Endianness::Little => u32::from_le_bytes(raw),
            }
        };
        let (captured, original) = (field(8), field(12));
        let snaplen = match header.snaplen {
            0 => MAX_RECORD_LEN,
            n => n.min(MAX_RECORD_LEN),
        };
        if captured > snaplen || captured > original {
            return Some(Err(
                self.damage(DamageKind::ImpossibleRecord { captured, original })
            ));
        }
        Some(Ok(RECORD_HEADER_LEN + captured as usize))
    }

    fn damage(&self, kind: DamageKind) -> Damage {
        Damage {
            offset: self.offset,
            kind,
        }
    }

    /// Accounts for one whole unit.
    fn take_unit(&mut self, unit: &[u8], on_record: &mut impl FnMut(Record<'_>)) {
        self.offset += unit.len() as u64;
        match self.header {
            None => match PcapHeader::from_slice(unit) {
                Ok((_, header)) => {
                    self.summary.link_type = Some(header.datalink.into());
                    self.header = Some(header);
                }
                Err(PcapError::IncompleteBuffer) | Err(_) => {
                    self.summary.damage = Some(Damage {
                        offset: 0,
                        kind: DamageKind::NotPcap,
                    });
                    return;
                }
            },
            Some(header) => {
                let field = |at: usize| {
                    let raw = [unit[at], unit[at + 1], unit[at + 2], unit[at + 3]];
                    match header.endianness {
                        Endianness::Big => u32::from_be_bytes(raw),
                        Endianness::Little => u32::from_le_bytes(raw),
                    }
                };
                let at = record_time(field(0), field(4), header.ts_resolution);
                self.summary.packets += 1;
                self.summary.first_packet.get_or_insert(at);
                self.summary.last_packet = Some(at);
                on_record(Record {
                    link_type: header.datalink.into(),
                    at,
                    original_len: field(12),
                    data: &unit[RECORD_HEADER_LEN..],
                });
            }
        }
        self.summary.whole_bytes = self.offset;
    }
}

fn is_pcap_magic(bytes: &[u8]) -> bool {
    const MAGICS: [[u8; 4]; 4] = [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
    ];
    MAGICS.iter().any(|m| m[..] == bytes[..4])
}

/// A record's time since the Unix epoch from its header's seconds and
/// fraction (micro- or nanoseconds, as the file header says). A fraction
/// past one second carries into the seconds, as libpcap reads it.
pub fn record_time(seconds: u32, fraction: u32, resolution: TsResolution) -> Duration {
    let nanos = match resolution {
        TsResolution::MicroSecond => u64::from(fraction) * 1_000,
        TsResolution::NanoSecond => u64::from(fraction),
    };
    Duration::from_secs(u64::from(seconds)) + Duration::from_nanos(nanos)
}

/// Checks a capture read to its end from `reader` (a local file).
pub fn check_reader(mut reader: impl std::io::Read) -> std::io::Result<PcapSummary> {
    let mut check = PcapCheck::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => return Ok(check.finish()),
            Ok(n) => check.feed(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Checks a whole capture held in memory (tests, small files).
pub fn check_bytes(bytes: &[u8]) -> PcapSummary {
    let mut check = PcapCheck::new();
    check.feed(bytes);
    check.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use pcap_file::pcap::{PcapPacket, PcapWriter};

    fn pcap_with(packets: usize, payload: usize) -> Vec<u8> {
        let header = PcapHeader {
            endianness: Endianness::Little,
            ..PcapHeader::default()
        };
        let mut writer = PcapWriter::with_header(Vec::new(), header).unwrap();
        let data = vec![0xab; payload];
        for i in 0..packets {
            let packet = PcapPacket::new(
                Duration::from_millis(1000 + i as u64),
                payload as u32,
                &data,
            );
            writer.write_packet(&packet).unwrap();
        }
        writer.into_writer()
    }

    fn check_in_chunks(bytes: &[u8], chunk: usize) -> PcapSummary {
        let mut check = PcapCheck::new();
        for part in bytes.chunks(chunk) {
            check.feed(part);
        }
        check.finish()
    }

    #[test]
    fn whole_capture_counts_packets_and_times_at_every_chunk_size() {
        let bytes = pcap_with(5, 100);
        for chunk in [1, 3, 16, 17, 24, 115, 116, 4096] {
            let summary = check_in_chunks(&bytes, chunk);
            assert_eq!(summary.packets, 5, "chunk {chunk}");
            assert_eq!(summary.first_packet, Some(Duration::from_millis(1000)));
            assert_eq!(summary.last_packet, Some(Duration::from_millis(1004)));
            assert_eq!(summary.whole_bytes, bytes.len() as u64);
            assert_eq!(summary.damage, None, "chunk {chunk}");
        }
    }

    #[test]
    fn every_whole_record_reaches_the_callback_once_at_every_chunk_size() {
        let bytes = pcap_with(4, 30);
        for chunk in [1, 5, 16, 40, 4096] {
            let mut check = PcapCheck::new();
            let mut seen = Vec::new();
            for part in bytes.chunks(chunk) {
                check.feed_with(part, |r| seen.push((r.at, r.original_len, r.data.to_vec())));
            }
            assert_eq!(seen.len(), 4, "chunk {chunk}");
            assert_eq!(seen[3].0, Duration::from_millis(1003));
            assert!(
                seen.iter()
                    .all(|(_, len, data)| *len == 30 && data == &vec![0xab; 30])
            );
        }
    }

    #[test]
    fn garbage_record_length_is_damage_at_its_offset_without_reading_on() {
        let mut bytes = pcap_with(2, 100);
        let second = HEADER_LEN + RECORD_HEADER_LEN + 100;
        // 524,288 bytes claimed: what a torn flush left in the field.
        bytes[second + 8..second + 12].copy_from_slice(&524_288u32.to_le_bytes());
        for chunk in [7, 64, 1 << 20] {
            let summary = check_in_chunks(&bytes, chunk);
            assert_eq!(summary.packets, 1);
            assert_eq!(summary.whole_bytes, second as u64);
            assert_eq!(
                summary.damage,
                Some(Damage {
                    offset: second as u64,
                    kind: DamageKind::ImpossibleRecord {
                        captured: 524_288,
                        original: 100
                    }
                })
            );
        }
    }

    #[test]
    fn torn_tail_and_short_and_foreign_files_are_named() {
        let bytes = pcap_with(2, 50);
        let summary = check_bytes(&bytes[..bytes.len() - 1]);
        assert_eq!(summary.packets, 1);
        assert_eq!(summary.damage.unwrap().kind, DamageKind::Truncated);
        assert_eq!(check_bytes(&[]).damage.unwrap().kind, DamageKind::NoHeader);
        assert_eq!(
            check_bytes(&bytes[..10]).damage.unwrap().kind,
            DamageKind::NoHeader
        );
        let text = b"this is not a capture file, just some text";
        assert_eq!(check_bytes(text).damage.unwrap().kind, DamageKind::NotPcap);
    }

    #[test]
    fn memory_stays_bounded_by_one_record() {
        let mut check = PcapCheck::new();
        check.feed(&pcap_with(0, 0));
        // A plausible-looking header for a record that never ends.
        let mut record = vec![0u8; RECORD_HEADER_LEN];
        record[8..12].copy_from_slice(&60_000u32.to_le_bytes());
        record[12..16].copy_from_slice(&60_000u32.to_le_bytes());
        check.feed(&record);
        for _ in 0..100 {
            check.feed(&[0u8; 1000]);
        }
        assert!(check.carry.len() <= RECORD_HEADER_LEN + 60_000);
    }

    /// Properties over generated input: arbitrary bytes in arbitrary
    /// chunkings, and real captures damaged in a record header.
    mod properties {
        use super::*;
        use pcap_file::DataLink;
        use proptest::prelude::*;

        /// Feeds `bytes` split at `cuts`, checking the memory bound after
        /// every chunk.
        fn check_split(bytes: &[u8], cuts: &[prop::sample::Index]) -> PcapSummary {
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            at.extend([0, bytes.len()]);
            at.sort_unstable();
            let mut check = PcapCheck::new();
            for pair in at.windows(2) {
                check.feed(&bytes[pair[0]..pair[1]]);
                assert!(
                    check.carry.len() <= RECORD_HEADER_LEN + MAX_RECORD_LEN as usize,
                    "carry grew to {} bytes",
                    check.carry.len()
                );
            }
            check.finish()
        }

        fn header() -> impl Strategy<Value = PcapHeader> {
            (any::<bool>(), any::<bool>(), 0u32..70_000).prop_map(|(big, nano, snaplen)| {
                PcapHeader {
                    endianness: if big {
                        Endianness::Big
                    } else {
                        Endianness::Little
                    },
                    ts_resolution: if nano {
                        TsResolution::NanoSecond
                    } else {
                        TsResolution::MicroSecond
                    },
                    snaplen,
                    datalink: DataLink::ETHERNET,
                    ..PcapHeader::default()
                }
            })
        }

        fn header_bytes(header: PcapHeader) -> Vec<u8> {
            PcapWriter::with_header(Vec::new(), header)
                .unwrap()
                .into_writer()
        }

        /// Random bytes rarely start with a pcap header: half the inputs
        /// get a real one, so record parsing sees garbage too.
        fn input() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..600),
                (header(), prop::collection::vec(any::<u8>(), 0..600)).prop_map(
                    |(header, tail)| {
                        let mut bytes = header_bytes(header);
                        bytes.extend(tail);
                        bytes
                    }
                ),
            ]
        }

        /// A capture of `sizes.len()` packets, and each record's offset.
        fn capture(header: PcapHeader, sizes: &[(u8, u8)]) -> (Vec<u8>, Vec<usize>) {
            let mut writer = PcapWriter::with_header(Vec::new(), header).unwrap();
            let mut offsets = Vec::new();
            let mut at = HEADER_LEN;
            for (i, &(captured, extra)) in sizes.iter().enumerate() {
                let data = vec![i as u8; usize::from(captured)];
                let original = u32::from(captured) + u32::from(extra);
                let packet =
                    PcapPacket::new(Duration::from_micros(1_000 + i as u64), original, &data);
                writer.write_packet(&packet).unwrap();
                offsets.push(at);
                at += RECORD_HEADER_LEN + usize::from(captured);
            }
            (writer.into_writer(), offsets)
        }

        proptest! {
            #[test]
            fn any_bytes_in_any_chunks_never_panic_and_stay_bounded(
                bytes in input(),
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            ) {
                let summary = check_split(&bytes, &cuts);
                prop_assert!(summary.whole_bytes <= bytes.len() as u64);
                if let Some(damage) = summary.damage {
                    prop_assert!(damage.offset <= bytes.len() as u64);
                    prop_assert!(damage.offset >= summary.whole_bytes);
                }
            }

            #[test]
            fn chunking_never_changes_the_summary(
                bytes in input(),
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            ) {
                prop_assert_eq!(check_split(&bytes, &cuts), check_bytes(&bytes));
            }

            #[test]
            fn a_whole_capture_is_read_whole_in_any_chunks(
                header in header().prop_map(|h| PcapHeader { snaplen: 65_535, ..h }),
                sizes in prop::collection::vec((any::<u8>(), any::<u8>()), 0..12),
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            ) {
                let (bytes, _) = capture(header, &sizes);
                let summary = check_split(&bytes, &cuts);
                prop_assert_eq!(summary.damage, None);
                prop_assert_eq!(summary.packets, sizes.len() as u64);
                prop_assert_eq!(summary.whole_bytes, bytes.len() as u64);
            }

            /// One byte of a record's captured- or original-length field
            /// flipped: when that makes the record impossible, the damage is
            /// reported at exactly that record; otherwise never before it.
            #[test]
            fn a_flipped_length_byte_is_damage_at_that_record(
                header in header().prop_map(|h| PcapHeader { snaplen: 65_535, ..h }),
                sizes in prop::collection::vec((any::<u8>(), any::<u8>()), 1..12),
                record in any::<prop::sample::Index>(),
                original_field in any::<bool>(),
                byte in 0usize..4,
                mask in 1u8..=255,
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            ) {
                let (mut bytes, offsets) = capture(header, &sizes);
                let index = record.index(sizes.len());
                let field = offsets[index] + if original_field { 12 } else { 8 };
                bytes[field + byte] ^= mask;
                let read = |at: usize| {
                    let raw = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
                    match header.endianness {
                        Endianness::Big => u32::from_be_bytes(raw),
                        Endianness::Little => u32::from_le_bytes(raw),
                    }
                };
                let (captured, original) = (read(offsets[index] + 8), read(offsets[index] + 12));
                let summary = check_split(&bytes, &cuts);
                prop_assert_eq!(summary, check_bytes(&bytes));
                if captured > original || captured > header.snaplen {
                    prop_assert_eq!(summary.damage, Some(Damage {
                        offset: offsets[index] as u64,
                        kind: DamageKind::ImpossibleRecord { captured, original },
                    }));
                    prop_assert_eq!(summary.packets, index as u64);
                    prop_assert_eq!(summary.whole_bytes, offsets[index] as u64);
                } else {
                    prop_assert!(summary.packets >= index as u64);
                    prop_assert!(summary.whole_bytes >= offsets[index] as u64);
                    if let Some(damage) = summary.damage {
                        prop_assert!(damage.offset >= offsets[index] as u64);
                    }
                }
            }
        }
    }
}
