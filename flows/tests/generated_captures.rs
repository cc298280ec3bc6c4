//! The flow index over generated input (test-support's `generated`):
//! random bytes, and well-formed frames under every link type it decodes,
//! intact or damaged in one place. It must never panic, must agree with the
//! pcap check alone, must account for every record once, and must write an
//! index that reads back.

use flows::decode::decode;
use flows::{IndexingCheck, read_index};
use proptest::prelude::*;
use spool::pcap::check_bytes;
use test_support::generated::{LINK_TYPES, capture_bytes, chunk_cuts, chunks, frame};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_record_under_any_link_type_decodes_or_is_skipped(
        (link_type, data) in prop::sample::select(LINK_TYPES.to_vec())
            .prop_flat_map(|link| (Just(link), frame(link))),
        other_link_type in any::<u32>(),
        original_len in any::<u32>(),
    ) {
        let _ = decode(link_type, &data, original_len);
        let _ = decode(other_link_type, &data, original_len);
    }

    #[test]
    fn indexing_any_capture_agrees_with_the_check_and_counts_every_record_once(
        bytes in capture_bytes(),
        cuts in chunk_cuts(),
    ) {
        let mut indexing = IndexingCheck::new("generated.pcap", Vec::new());
        for chunk in chunks(&bytes, &cuts) {
            indexing.feed(chunk);
        }
        let (summary, index) = indexing.finish();
        prop_assert_eq!(&summary, &check_bytes(&bytes));
        let (gz, stats) = index.expect("the index of any input is written");
        prop_assert_eq!(stats.records, summary.packets);
        let records = read_index(gz.as_slice()).expect("the index reads back");
        prop_assert_eq!(records.len() as u64, stats.flows);
        let in_flows: u64 = records.iter().map(|r| r.packets_src + r.packets_dst).sum();
        prop_assert_eq!(in_flows + stats.not_ip, stats.records);
        for record in &records {
            prop_assert!(record.first <= record.last, "{record:?}");
        }
    }

    #[test]
    fn any_bytes_read_as_an_index_are_an_error_not_a_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        gzipped in any::<bool>(),
    ) {
        let input = if gzipped {
            use std::io::Write as _;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&bytes).unwrap();
            gz.finish().unwrap()
        } else {
            bytes
        };
        let _ = read_index(input.as_slice());
    }
}
