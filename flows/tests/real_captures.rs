//! The flow index on captures written by the real tcpdump on loopback, for
//! each link type tcpdump writes here (Ethernet on `lo`, Linux cooked v1 and
//! v2 on `any`), compared with tshark's reading of the same file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use test_support::{prerequisites, traffic};

use std::net::IpAddr;

use flows::{FlowRecord, IndexingCheck, read_index};
use traffic::{Injected, capture, tshark_count};

fn index_file(path: &std::path::Path) -> (spool::pcap::PcapSummary, Vec<FlowRecord>) {
    let bytes = std::fs::read(path).unwrap();
    let mut check = IndexingCheck::new("test/key.pcap", Vec::new());
    // Odd chunk sizes: records straddle chunks, as in the hashing read.
    for chunk in bytes.chunks(1000) {
        check.feed(chunk);
    }
    let (summary, index) = check.finish();
    let (gz, stats) = index.unwrap();
    assert_eq!(stats.records, summary.packets);
    (summary, read_index(gz.as_slice()).unwrap())
}

fn flow<'a>(flows: &'a [FlowRecord], proto: &str, dst: IpAddr, dport: u16) -> &'a FlowRecord {
    flows
        .iter()
        .find(|f| f.proto == proto && f.dst == dst && f.dport == dport)
        .unwrap_or_else(|| panic!("no {proto} flow to {dst}:{dport} in {flows:#?}"))
}

fn check_injected(link: &str, path: &std::path::Path, injected: &Injected) {
    let (summary, flows) = index_file(path);
    assert_eq!(summary.damage, None, "{link}");

    let refused = flow(
        &flows,
        "tcp",
        injected.refused.ip(),
        injected.refused.port(),
    );
    assert_eq!(refused.resets_dst, 1, "{link}: {refused:?}");
    assert_eq!(refused.resets_in_handshake, 1, "{link}");
    assert_eq!(refused.syn_unanswered, 0, "{link}");
    assert!(refused.first_symptom.is_some(), "{link}");

    let closed = flow(
        &flows,
        "udp",
        injected.closed_udp.ip(),
        injected.closed_udp.port(),
    );
    assert_eq!(closed.icmp_unreachable, 1, "{link}: {closed:?}");
    assert_eq!(closed.packets_src, 1, "{link}");

    let silent = flow(&flows, "udp", injected.silent_dns.ip(), 53);
    assert_eq!(silent.dns_unanswered, 1, "{link}: {silent:?}");
    assert_eq!(silent.icmp_unreachable, 0, "{link}");

    let nx = flow(&flows, "udp", injected.nxdomain_dns.ip(), 53);
    assert_eq!(nx.dns_nxdomain, 1, "{link}: {nx:?}");
    assert_eq!(nx.dns_unanswered, 0, "{link}");
    assert_eq!((nx.packets_src, nx.packets_dst), (1, 1), "{link}");

    let slow = flow(&flows, "udp", injected.slow_dns.ip(), 53);
    assert_eq!(
        (slow.dns_slow, slow.dns_unanswered),
        (1, 0),
        "{link}: {slow:?}"
    );
    assert!(
        slow.dns_slowest_us.unwrap() >= traffic::SLOW_DNS_ANSWER.as_micros() as u64,
        "{link}: {slow:?}"
    );

    // The stalled server: the connection it accepted saw its window close
    // and was reset by it; later attempts were never answered and their
    // SYNs retransmitted.
    let to_stalled: Vec<&FlowRecord> = flows
        .iter()
        .filter(|f| f.proto == "tcp" && f.dst == injected.stalled.ip())
        .collect();
    assert!(
        to_stalled
            .iter()
            .any(|f| f.zero_windows > 0 && f.resets_dst > 0 && f.handshake_us.is_some()),
        "{link}: {to_stalled:#?}"
    );
    assert!(
        to_stalled
            .iter()
            .any(|f| f.syn_unanswered > 1 && f.retransmissions > 0),
        "{link}: {to_stalled:#?}"
    );

    let fine = flow(&flows, "tcp", injected.served.ip(), injected.served.port());
    assert!(fine.handshake_us.is_some(), "{link}: {fine:?}");
    assert_eq!(fine.count(flows::Symptom::Reset), 0, "{link}: {fine:?}");
    assert_eq!(fine.syn_unanswered, 0, "{link}");

    // Totals agree with tshark over the same file.
    let total = |f: fn(&FlowRecord) -> u64| flows.iter().map(f).sum::<u64>();
    assert_eq!(
        total(|f| f.resets_src + f.resets_dst),
        tshark_count(path, "tcp.flags.reset==1"),
        "{link}: resets"
    );
    assert_eq!(
        total(|f| f.retransmissions),
        tshark_count(path, "tcp.analysis.retransmission"),
        "{link}: retransmissions"
    );
    assert_eq!(
        total(|f| f.dup_acks),
        tshark_count(path, "tcp.analysis.duplicate_ack"),
        "{link}: duplicate ACKs"
    );
    assert_eq!(
        total(|f| f.zero_windows),
        tshark_count(path, "tcp.analysis.zero_window"),
        "{link}: zero windows"
    );
    assert!(total(|f| f.retransmissions) > 0, "{link}: none to compare");
    assert_eq!(
        total(|f| f.icmp_unreachable),
        tshark_count(path, "icmp.type==3 && icmp.code!=4"),
        "{link}: icmp unreachable"
    );
    assert_eq!(
        total(|f| f.dns_nxdomain),
        tshark_count(path, "dns.flags.rcode==3"),
        "{link}: nxdomain"
    );
    assert_eq!(
        total(|f| f.dns_nxdomain),
        injected.nxdomain_answers as u64,
        "{link}: nxdomain"
    );
    let packets = total(|f| f.packets_src + f.packets_dst);
    assert_eq!(packets, summary.packets, "{link}: every packet in one flow");
}

#[test]
fn injected_failures_are_found_in_each_link_type_tcpdump_writes() {
    let test = "injected_failures_are_found_in_each_link_type_tcpdump_writes";
    if !prerequisites::can_capture(test) || !traffic::has_tshark(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // One tcpdump at a time: two closing at once can stall in the kernel.
    for (link, args) in [
        ("ethernet", &["-i", "lo"][..]),
        ("linux-sll2", &["-i", "any"][..]),
        ("linux-sll", &["-i", "any", "-y", "LINUX_SLL"][..]),
    ] {
        let path = dir.path().join(format!("{link}.pcap"));
        let injected = capture(&path, args);
        check_injected(link, &path, &injected);
    }
}
