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
    assert_eq!(
        totals["resets"],
        traffic::tshark_count(&path, "tcp.flags.reset==1")
    );
    assert_eq!(
        totals["retransmissions"],
        traffic::tshark_count(&path, "tcp.analysis.retransmission")
    );
    assert_eq!(
        totals["icmp_unreachable"],
        traffic::tshark_count(&path, "icmp.type==3")
    );
    assert_eq!(report["handshakes"]["connections"], 1);

    // Worst first: the unanswered and unreachable before the NXDOMAIN.
    let order: Vec<u64> = report["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["dns_nxdomain"].as_u64().unwrap())
        .collect();
    assert_eq!(order.last(), Some(&1), "{report:#}");

    // The text form names the same failures.
    let text = explain(&[path.as_os_str()]).success();
    let text = String::from_utf8(text.get_output().stdout.clone()).unwrap();
    for needed in [
        "refused: reset during the handshake",
        "ICMP destination unreachable",
        "DNS query never answered",
        "DNS NXDOMAIN",
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
