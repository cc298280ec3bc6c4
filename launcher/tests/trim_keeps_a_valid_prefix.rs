//! Property: trimming any file (arbitrary bytes, a real capture torn or
//! damaged anywhere) never panics, leaves a prefix of what was there, and
//! when it says the result is a valid pcap, the spool's own check agrees.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use launcher::trim::{Trimmed, trim_to_last_record};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use proptest::prelude::*;

fn capture(sizes: &[u8], nano: bool) -> Vec<u8> {
    let header = PcapHeader {
        ts_resolution: if nano {
            pcap_file::TsResolution::NanoSecond
        } else {
            pcap_file::TsResolution::MicroSecond
        },
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(Vec::new(), header).unwrap();
    for (i, &size) in sizes.iter().enumerate() {
        let data = vec![0x5a; usize::from(size)];
        let packet = PcapPacket::new(Duration::from_millis(i as u64), u32::from(size), &data);
        writer.write_packet(&packet).unwrap();
    }
    writer.into_writer()
}

/// Anything a killed tcpdump, a full disk or a foreign file could leave.
fn file() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        // A real capture cut anywhere, then damaged at a few places.
        (
            prop::collection::vec(any::<u8>(), 0..8),
            any::<bool>(),
            any::<prop::sample::Index>(),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        )
            .prop_map(|(sizes, nano, cut, flips)| {
                let mut bytes = capture(&sizes, nano);
                bytes.truncate(cut.index(bytes.len() + 1));
                for (at, mask) in flips {
                    if !bytes.is_empty() {
                        let at = at.index(bytes.len());
                        bytes[at] ^= mask;
                    }
                }
                bytes
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn trimming_any_file_leaves_a_prefix_that_checks_whole(bytes in file()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.pcap");
        std::fs::write(&path, &bytes).unwrap();
        let outcome = trim_to_last_record(&path).unwrap();
        let after = std::fs::read(&path).unwrap();
        prop_assert!(bytes.starts_with(&after), "the result is not a prefix of the input");
        match outcome {
            Trimmed::Valid { packets, cut_bytes } => {
                prop_assert_eq!(after.len() as u64 + cut_bytes, bytes.len() as u64);
                let summary = spool::pcap::check_bytes(&after);
                prop_assert_eq!(summary.damage, None);
                prop_assert_eq!(summary.packets, packets);
            }
            // Files it cannot make valid are left exactly as they were.
            Trimmed::NoHeader { bytes: len } => {
                prop_assert_eq!(len, bytes.len() as u64);
                prop_assert_eq!(&after, &bytes);
            }
            Trimmed::NotPcap => prop_assert_eq!(&after, &bytes),
        }
    }
}
