//! Makes a file left by a killed tcpdump a valid pcap again: everything
//! after the last whole record is cut off. Records are read with the
//! `pcap-file` parser, a bounded window at a time, whatever the file size.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use pcap_file::PcapError;
use pcap_file::pcap::PcapParser;

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
    let mut window = Vec::with_capacity(WINDOW);
    read_more(&mut file, &mut window)?;
    let (parser, mut at) = match PcapParser::new(&window) {
        Ok((rest, parser)) => (parser, window.len() - rest.len()),
        Err(PcapError::IncompleteBuffer) => return Ok(Trimmed::NoHeader { bytes: total }),
        Err(_) => return Ok(Trimmed::NotPcap),
    };
    let mut whole_bytes = at as u64;
    let mut packets = 0;
    loop {
        match parser.next_raw_packet(&window[at..]) {
            Ok((rest, _)) => {
                let used = window.len() - at - rest.len();
                at += used;
                whole_bytes += used as u64;
                packets += 1;
            }
            Err(PcapError::IncompleteBuffer) => {
                window.drain(..at);
                at = 0;
                if read_more(&mut file, &mut window)? == 0 {
                    break;
                }
            }
            // A garbled record header can only be the torn tail.
            Err(_) => break,
        }
    }
    let cut_bytes = total - whole_bytes;
    if cut_bytes > 0 {
        file.set_len(whole_bytes)?;
        file.sync_all()?;
    }
    Ok(Trimmed::Valid { packets, cut_bytes })
}

/// Appends up to one window of the file to `buffer`; 0 at the end.
fn read_more(file: &mut File, buffer: &mut Vec<u8>) -> io::Result<usize> {
    let before = buffer.len();
    let read = file.take(WINDOW as u64).read_to_end(buffer)?;
    debug_assert_eq!(buffer.len(), before + read);
    Ok(read)
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
    fn short_and_foreign_files_are_reported_not_changed() {
        assert_eq!(trim_bytes(&[]).0, Trimmed::NoHeader { bytes: 0 });
        assert_eq!(trim_bytes(&[0xd4, 0xc3]).0, Trimmed::NoHeader { bytes: 2 });
        let text = b"this is not a capture file, just some text".repeat(3);
        let (outcome, after) = trim_bytes(&text);
        assert_eq!(outcome, Trimmed::NotPcap);
        assert_eq!(after, text);
    }
}
