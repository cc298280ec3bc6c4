//! Makes a file left by a killed tcpdump a valid pcap again: everything
//! after the last whole, plausible record is cut off. The file is read a
//! bounded window at a time through the spool crate's [`PcapCheck`], which
//! stops at the first impossible record (a captured length above the
//! snaplen or the original length) instead of reading on to the end.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use spool::pcap::{DamageKind, PcapCheck};

/// How much of the file is read at a time.
const WINDOW: usize = 1 << 20;

/// What trimming found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trimmed {
    /// A pcap of `packets` whole records; `cut_bytes` were removed from its end.
    Valid { packets: u64, cut_bytes: u64 },
    /// Shorter than a pcap header: tcpdump died before writing one, so the
    /// file holds no packets.
    NoHeader { bytes: u64 },
    /// Not a pcap file at all; left untouched.
    NotPcap,
}

/// Trims `path` in place to its last whole record.
pub fn trim_to_last_record(path: &Path) -> io::Result<Trimmed> {
    let mut file = File::options().read(true).write(true).open(path)?;
    let total = file.metadata()?.len();
    let mut check = PcapCheck::new();
    let mut window = vec![0; WINDOW];
    while !check.is_damaged() {
        let read = file.read(&mut window)?;
        if read == 0 {
            break;
        }
        check.feed(&window[..read]);
    }
    let summary = check.finish();
    match summary.damage.map(|d| d.kind) {
        Some(DamageKind::NotPcap) => return Ok(Trimmed::NotPcap),
        Some(DamageKind::NoHeader) => return Ok(Trimmed::NoHeader { bytes: total }),
        _ => {}
    }
    let cut_bytes = total - summary.whole_bytes;
    if cut_bytes > 0 {
        file.set_len(summary.whole_bytes)?;
        file.sync_all()?;
    }
    Ok(Trimmed::Valid {
        packets: summary.packets,
        cut_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use std::time::Duration;

    fn pcap_with(packets: usize, payload: usize) -> Vec<u8> {
        let mut writer = PcapWriter::with_header(Vec::new(), PcapHeader::default()).unwrap();
        let data = vec![0xab; payload];
        for i in 0..packets {
            let packet = PcapPacket::new(Duration::from_millis(i as u64), payload as u32, &data);
            writer.write_packet(&packet).unwrap();
        }
        writer.into_writer()
    }

    fn trim_bytes(bytes: &[u8]) -> (Trimmed, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pcap");
        std::fs::write(&path, bytes).unwrap();
        let outcome = trim_to_last_record(&path).unwrap();
        (outcome, std::fs::read(&path).unwrap())
    }

    #[test]
    fn whole_file_is_left_as_it_is() {
        let bytes = pcap_with(3, 100);
        let (outcome, after) = trim_bytes(&bytes);
        assert_eq!(
            outcome,
            Trimmed::Valid {
                packets: 3,
                cut_bytes: 0
            }
        );
        assert_eq!(after, bytes);
    }

    #[test]
    fn torn_record_is_cut_at_every_possible_tear() {
        let whole = pcap_with(2, 50);
        let one_record = pcap_with(1, 50).len();
        for torn_at in one_record + 1..whole.len() {
            let (outcome, after) = trim_bytes(&whole[..torn_at]);
            assert_eq!(
                outcome,
                Trimmed::Valid {
                    packets: 1,
                    cut_bytes: (torn_at - one_record) as u64
                },
                "torn at {torn_at}"
            );
            assert_eq!(after, whole[..one_record]);
        }
    }

    #[test]
    fn trims_files_larger_than_the_window() {
        let mut bytes = pcap_with(3000, 1000);
        let whole = bytes.len();
        bytes.extend_from_slice(&[1, 2, 3, 4, 5]);
        let (outcome, after) = trim_bytes(&bytes);
        assert_eq!(
            outcome,
            Trimmed::Valid {
                packets: 3000,
                cut_bytes: 5
            }
        );
        assert_eq!(after.len(), whole);
    }

    #[test]
    fn garbage_record_length_is_cut_there_without_reading_the_rest() {
        let mut bytes = pcap_with(3, 100);
        let second = 24 + 16 + 100;
        bytes[second + 8..second + 12].copy_from_slice(&524_288u32.to_be_bytes());
        // Much more than a window after it: only a reader that stops at the
        // impossible record leaves these bytes unread.
        bytes.extend(std::iter::repeat_n(0x55, 3 * WINDOW));
        let total = bytes.len() as u64;
        let (outcome, after) = trim_bytes(&bytes);
        assert_eq!(
            outcome,
            Trimmed::Valid {
                packets: 1,
                cut_bytes: total - second as u64
            }
        );
        assert_eq!(after.len(), second);
        assert_eq!(spool::pcap::check_bytes(&after).damage, None);
    }

    #[test]
    fn short_and_foreign_files_are_reported_not_changed() {
        assert_eq!(trim_bytes(&[]).0, Trimmed::NoHeader { bytes: 0 });
        assert_eq!(trim_bytes(&[0xd4, 0xc3]).0, Trimmed::NoHeader { bytes: 2 });
        let text = b"this is not a capture file, just some text".repeat(3);
        let (outcome, after) = trim_bytes(&text);
        assert_eq!(outcome, Trimmed::NotPcap);
        assert_eq!(after, text);
    }
}
