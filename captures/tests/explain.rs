//! `captures explain` on captures written by the real tcpdump on loopback,
//! checked against tshark over the same file; and on bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use test_support::{prerequisites, traffic};

use assert_cmd::Command;

/// One tcpdump at a time in this binary: two closing at once can stall in
/// the kernel.
static TCPDUMP: std::sync::Mutex<()> = std::sync::Mutex::new(());
use serde_json::Value;

fn explain(args: &[&std::ffi::OsStr]) -> assert_cmd::assert::Assert {
    Command::cargo_bin("captures")
        .unwrap()
        .arg("explain")
        .args(args)
        .assert()
}

fn flow_to(report: &Value, dst: std::net::SocketAddr) -> &Value {
    report["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["dst"] == dst.ip().to_string() && f["dport"] == dst.port())
        .unwrap_or_else(|| panic!("no flow to {dst} in {report:#}"))
}

#[test]
fn explain_names_each_injected_failure_with_its_flow_and_time_and_agrees_with_tshark() {
    let test = "explain_names_each_injected_failure_with_its_flow_and_time_and_agrees_with_tshark";
    if !prerequisites::can_capture(test) || !traffic::has_tshark(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lo.pcap");
    let injected = {
        let _one = TCPDUMP
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        traffic::capture(&path, &["-i", "lo"])
    };

    let out = explain(&[path.as_os_str(), "--json".as_ref()]).success();
    let report: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();

    let refused = flow_to(&report, injected.refused);
    assert_eq!(refused["resets_in_handshake"], 1, "{refused:#}");
    let unreachable = flow_to(&report, injected.closed_udp);
    assert_eq!(unreachable["icmp_unreachable"], 1, "{unreachable:#}");
    let silent = flow_to(&report, injected.silent_dns);
    assert_eq!(silent["dns_unanswered"], 1, "{silent:#}");
    let nx = flow_to(&report, injected.nxdomain_dns);
    assert_eq!(nx["dns_nxdomain"], 1, "{nx:#}");
    // The healthy exchange is not a symptom.
    assert!(
        report["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["dport"] != injected.served.port())
    );

    // Each symptom's time is the time of the packet tshark shows for it.
    let tshark_time = |filter: &str| {
        let out = std::process::Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&path)
            .args(["-Y", filter, "-T", "fields", "-e", "frame.time_epoch"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().next().unwrap().trim().parse::<f64>().unwrap()
    };
    let ours = |f: &Value| {
        chrono::DateTime::parse_from_rfc3339(f["first_symptom"].as_str().unwrap())
            .unwrap()
            .timestamp_micros() as f64
            / 1e6
    };
    let close = |a: f64, b: f64| (a - b).abs() < 2e-6;
    assert!(close(ours(refused), tshark_time("tcp.flags.reset==1")));
    assert!(close(ours(unreachable), tshark_time("icmp.type==3")));
    assert!(close(ours(nx), tshark_time("dns.flags.rcode==3")));

    // Totals agree with tshark.
    let totals = &report["totals"];
    for (field, filter) in [
        ("resets", "tcp.flags.reset==1"),
        ("retransmissions", "tcp.analysis.retransmission"),
        ("dup_acks", "tcp.analysis.duplicate_ack"),
        ("zero_windows", "tcp.analysis.zero_window"),
        ("icmp_unreachable", "icmp.type==3"),
        ("dns_nxdomain", "dns.flags.rcode==3"),
    ] {
        assert_eq!(
            totals[field],
            traffic::tshark_count(&path, filter),
            "{field} against tshark -Y {filter}"
        );
    }
    assert!(
        totals["retransmissions"].as_u64().unwrap() > 0,
        "{totals:#}"
    );
    assert!(totals["zero_windows"].as_u64().unwrap() > 0, "{totals:#}");
    assert_eq!(
        report["handshakes"]["count"],
        traffic::tshark_count(
            &path,
            "tcp.flags.syn==1 && tcp.flags.ack==1 && !tcp.analysis.retransmission"
        )
    );

    // The late DNS answer is slow; every answer is in the percentiles.
    let slow = flow_to(&report, injected.slow_dns);
    assert_eq!(slow["dns_slow"], 1, "{slow:#}");
    let answers = &report["dns_answers"];
    assert_eq!(answers["slow"], 1, "{answers:#}");
    assert_eq!(
        answers["count"],
        injected.nxdomain_answers + 1,
        "{answers:#}"
    );
    assert!(
        answers["max_us"].as_u64().unwrap() >= traffic::SLOW_DNS_ANSWER.as_micros() as u64,
        "{answers:#}"
    );
    // The NXDOMAIN answers came together: one burst from their server.
    let bursts = report["dns_error_bursts"].as_array().unwrap();
    assert_eq!(bursts.len(), 1, "{bursts:#?}");
    assert_eq!(bursts[0]["server"], injected.nxdomain_dns.ip().to_string());
    assert_eq!(bursts[0]["rcode"], "NXDOMAIN");
    assert_eq!(bursts[0]["answers"], injected.nxdomain_answers);
    let burst_from = chrono::DateTime::parse_from_rfc3339(bursts[0]["from"].as_str().unwrap())
        .unwrap()
        .timestamp_micros() as f64
        / 1e6;
    assert!(close(burst_from, tshark_time("dns.flags.rcode==3")));

    // Worst first: the unanswered query before any NXDOMAIN.
    let flows = report["flows"].as_array().unwrap();
    let position = |pred: &dyn Fn(&Value) -> bool| flows.iter().position(pred).unwrap();
    let silent_at = position(&|f| f["dns_unanswered"] == 1);
    let first_nx = position(&|f| f["dns_nxdomain"] == 1);
    assert!(silent_at < first_nx, "{report:#}");

    // The text form names the same failures.
    let text = explain(&[path.as_os_str()]).success();
    let text = String::from_utf8(text.get_output().stdout.clone()).unwrap();
    for needed in [
        "refused: reset during the handshake",
        "ICMP destination unreachable",
        "DNS query never answered",
        "DNS NXDOMAIN",
        "slow DNS answer",
        "zero window",
        "connection attempt never answered",
        "DNS error bursts",
        "DNS answers: 7 answered",
        &injected.refused.to_string(),
    ] {
        assert!(text.contains(needed), "{needed:?} missing from:\n{text}");
    }
}

#[test]
fn a_file_that_is_not_a_pcap_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "this is not a capture, only some text").unwrap();
    let out = explain(&[path.as_os_str()]).failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("notes.txt") && stderr.contains("not a pcap"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Empty, and pcapng: named too, never a panic.
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let pcapng = dir.path().join("capture.pcapng");
    std::fs::write(
        &pcapng,
        [0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a],
    )
    .unwrap();
    for path in [&empty, &pcapng] {
        let out = explain(&[path.as_os_str()]).failure();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains(&*path.to_string_lossy()) && stderr.contains("not a pcap"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    let missing = dir.path().join("missing.pcap");
    let out = explain(&[missing.as_os_str()]).failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("missing.pcap"), "{stderr}");
}

#[test]
fn a_torn_capture_is_explained_up_to_where_it_stops_and_says_so() {
    if !prerequisites::can_capture("a_torn_capture_is_explained_up_to_where_it_stops_and_says_so") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lo.pcap");
    let injected = {
        let _one = TCPDUMP
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        traffic::capture(&path, &["-i", "lo"])
    };
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&path, &bytes).unwrap();

    let out = explain(&[path.as_os_str(), "--json".as_ref()]).success();
    let report: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let damage = report["files"][0]["damage"].as_str().unwrap();
    assert!(
        damage.contains("whole packets") && damage.contains("ends inside the record at byte"),
        "{damage}"
    );
    // What came before the tear is still explained.
    assert_eq!(flow_to(&report, injected.refused)["resets_in_handshake"], 1);
}

/// Issue 20, item 2: explain holds a bounded number of flows; its totals
/// do not depend on that bound.
#[test]
fn explain_totals_on_a_many_flow_capture_equal_those_of_an_unbounded_table() {
    use captures::explain::{Explainer, MAX_REPORTED_FLOWS, Report, Scope};
    use test_support::synthetic::{FlowShape, write_many_flows};
    let flows = 30_000u64;
    let mut scan = Vec::new();
    write_many_flows(&mut scan, flows, FlowShape::PortScan, 1_796_000_000, 60).unwrap();
    let mut udp = Vec::new();
    write_many_flows(&mut udp, flows, FlowShape::Udp, 1_796_000_100, 60).unwrap();
    let report = |max_live: usize| -> Report {
        let mut explainer = Explainer::new(Scope::default()).max_live_flows(max_live);
        for (name, pcap) in [("scan", &scan), ("udp", &udp)] {
            let mut reading = explainer.file(name);
            for chunk in pcap.chunks(1 << 16) {
                assert!(reading.feed(chunk));
            }
            reading.finish().unwrap();
        }
        explainer.finish()
    };
    let bounded = report(500);
    let unbounded = report(10_000_000);
    assert_eq!(bounded.totals, unbounded.totals);
    // Half the SYNs answered by RST, half never.
    assert_eq!(bounded.totals.syn_unanswered, flows / 2);
    assert_eq!(bounded.totals.resets_in_handshake, flows / 2);
    for r in [&bounded, &unbounded] {
        assert_eq!(r.flows.len(), MAX_REPORTED_FLOWS);
        assert_eq!(r.flows.len() as u64 + r.flows_not_listed, flows);
    }
    let counts =
        |r: &Report| -> Vec<(u64, u64)> { r.files.iter().map(|f| (f.packets, f.flows)).collect() };
    assert_eq!(counts(&bounded), counts(&unbounded));
    assert_eq!(counts(&bounded)[1], (flows, flows));
}
