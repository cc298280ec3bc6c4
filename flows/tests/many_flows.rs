//! Regression tests for issue 20, item 2: a capture of more flows than the
//! flow table holds is indexed in bounded memory, and every flow can still
//! be found once its partial records are merged.
#![allow(clippy::expect_used)]

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use flows::{FlowRecord, IndexReader, IndexWriter, PartialMerger, ReadLimits, TableStats};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use spool::pcap::PcapCheck;
use test_support::synthetic::{FlowShape, write_many_flows};

const START: u64 = 1_796_000_000;

/// Indexes `pcap` with a table of `cap` live flows.
fn index(pcap: &[u8], cap: usize) -> (Vec<u8>, TableStats) {
    let mut writer = IndexWriter::new("k/x.pcap", Vec::new()).max_live_flows(cap);
    let mut check = PcapCheck::new();
    for chunk in pcap.chunks(64 << 10) {
        check.feed_with(chunk, |record| writer.add(record));
    }
    assert_eq!(check.finish().damage, None);
    writer.finish().expect("the index is written")
}

/// Reads an index back as `find` does: streamed, partial records merged.
fn read_merged(gz: &[u8]) -> (Vec<FlowRecord>, usize) {
    let mut merged = Vec::new();
    let mut segments = 0;
    let mut merger = PartialMerger::default();
    let mut reader = IndexReader::new(ReadLimits::default(), |record| {
        segments += 1;
        merger.push(record, &mut |whole| merged.push(whole));
    });
    reader.feed(gz).expect("the index reads back");
    reader.finish().expect("the index ends well");
    merger.finish(&mut |whole| merged.push(whole));
    (merged, segments)
}

fn ends(f: &FlowRecord) -> (String, (IpAddr, u16), (IpAddr, u16)) {
    let (a, b) = ((f.src, f.sport), (f.dst, f.dport));
    (f.proto.clone(), a.min(b), a.max(b))
}

fn udp(from: ([u8; 4], u16), to: ([u8; 4], u16)) -> Vec<u8> {
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(from.0, to.0, 64)
        .udp(from.1, to.1)
        .write(&mut frame, b"x")
        .expect("a frame");
    frame
}

#[test]
fn a_capture_with_more_flows_than_the_table_holds_is_indexed_whole_within_the_cap() {
    const CAP: usize = 256;
    const LONG: u16 = 200;
    const SHORT: u32 = 5_000;
    // LONG flows ask at the start and are answered 50 s later; SHORT
    // one-packet flows in between push them out of the table.
    let mut pcap = PcapWriter::with_header(Vec::new(), PcapHeader::default()).expect("a pcap");
    let mut write = |ms: u64, frame: Vec<u8>| {
        let at = Duration::from_secs(START) + Duration::from_millis(ms);
        pcap.write_packet(&PcapPacket::new(at, frame.len() as u32, &frame))
            .expect("a packet");
    };
    let server = ([10, 2, 0, 1], 4_000);
    for i in 0..LONG {
        write(u64::from(i), udp(([10, 1, 0, 1], 20_000 + i), server));
    }
    for i in 0..SHORT {
        let client = [10, 5, (i >> 8) as u8, i as u8];
        write(1_000 + u64::from(i) * 9, udp((client, 30_000), server));
    }
    for i in 0..LONG {
        write(
            50_000 + u64::from(i),
            udp(server, ([10, 1, 0, 1], 20_000 + i)),
        );
    }
    let pcap = pcap.into_writer();

    let (gz, stats) = index(&pcap, CAP);
    assert!(
        stats.live_high_water <= CAP,
        "the table held {} flows, above its cap of {CAP}",
        stats.live_high_water
    );
    assert!(stats.partial > 0, "the cap was never reached: {stats:?}");

    let (merged, segments) = read_merged(&gz);
    assert!(segments > merged.len(), "no flow was split: nothing merged");
    let distinct: HashSet<_> = merged.iter().map(ends).collect();
    assert_eq!(distinct.len(), usize::from(LONG) + SHORT as usize);
    assert_eq!(merged.len(), distinct.len(), "a flow was listed twice");
    let long: Vec<&FlowRecord> = merged
        .iter()
        .filter(|f| f.involves(IpAddr::from([10, 1, 0, 1])))
        .collect();
    assert_eq!(long.len(), usize::from(LONG));
    for f in long {
        assert_eq!(
            (f.packets_src, f.packets_dst, f.partial),
            (1, 1, false),
            "the question and its answer are one flow: {f:?}"
        );
    }
}

#[test]
fn every_flow_of_a_synthetic_many_flow_capture_is_found_after_merging() {
    for shape in [FlowShape::Udp, FlowShape::PortScan] {
        let flows = 20_000;
        let mut pcap = Vec::new();
        write_many_flows(&mut pcap, flows, shape, START, 60).expect("a capture");
        let (gz, stats) = index(&pcap, 1_000);
        assert!(stats.live_high_water <= 1_000, "{shape:?}: {stats:?}");
        let (merged, _) = read_merged(&gz);
        let distinct: HashSet<_> = merged.iter().map(ends).collect();
        assert_eq!(distinct.len() as u64, flows, "{shape:?}");
        let (huge_cap, _) = index(&pcap, 1_000_000);
        let (whole, _) = read_merged(&huge_cap);
        let packets = |records: &[FlowRecord]| -> u64 {
            records.iter().map(|f| f.packets_src + f.packets_dst).sum()
        };
        assert_eq!(packets(&merged), packets(&whole), "{shape:?}");
    }
}
