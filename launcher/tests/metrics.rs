//! The launcher's metrics port with the real tcpdump (issue 23): tcpdump's
//! counters, asked with SIGUSR1, move while it captures, and asking at
//! 10 Hz under load neither loses nor damages a packet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use nix::sys::signal::Signal;
use test_support::*;

const LAUNCHER: &str = env!("CARGO_BIN_EXE_launcher");

/// The value of an unlabelled sample of `name` in an exposition.
fn sample(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| {
            let (metric, value) = line.split_once(' ')?;
            (metric == name).then(|| value.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no sample {name} in:\n{exposition}"))
}

fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "GET /metrics answered {status}: {body}");
    body
}

#[test]
fn sigusr1_at_ten_hertz_under_load_loses_and_damages_nothing_and_the_counters_follow() {
    if !can_capture("sigusr1_at_ten_hertz_under_load_loses_and_damages_nothing") {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let addr_arg = addr.to_string();
    let mut launcher = start_capture(
        LAUNCHER,
        &spool,
        port,
        &[
            "--rotate-seconds",
            "1",
            "--stats-interval-ms",
            "100",
            "--metrics-addr",
            &addr_arg,
        ],
    );
    let (rate, seconds) = (10_000, 10);
    let sender = std::thread::spawn(move || send_numbered(port, 0, rate * seconds, rate));
    std::thread::sleep(Duration::from_secs(4));
    let midway = scrape(addr);
    assert!(
        sample(&midway, "s3_tcpdump_launcher_packets_captured_total") > 0.0,
        "no packet counted while capturing:\n{midway}"
    );
    assert!(sample(&midway, "s3_tcpdump_launcher_captures_handed_over_total") > 0.0);
    assert_eq!(http_get(addr, "/healthz").0, 200, "tcpdump is writing");
    assert_eq!(http_get(addr, "/other").0, 404);
    sender.join().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let after = scrape(addr);
    let sent = (rate * seconds) as f64;
    let captured = sample(&after, "s3_tcpdump_launcher_packets_captured_total");
    assert!(captured >= sent, "{captured} counted of {sent} sent");
    assert!(captured > sample(&midway, "s3_tcpdump_launcher_packets_captured_total"));
    assert_eq!(
        sample(
            &after,
            "s3_tcpdump_launcher_packets_dropped_by_kernel_total"
        ),
        0.0
    );
    assert!(
        sample(&after, "s3_tcpdump_launcher_tcpdump_stats_reports_total") >= 50.0,
        "tcpdump did not answer SIGUSR1 about ten times a second:\n{after}"
    );
    assert_eq!(sample(&after, "s3_tcpdump_launcher_stalled"), 0.0);
    assert!(sample(&after, "s3_tcpdump_launcher_handed_over_bytes_total") > sent * 20.0);

    signal(&launcher, Signal::SIGTERM);
    assert!(launcher.wait().unwrap().success());
    let ready = Spool::files(&spool.ready());
    assert!(ready.len() >= 8, "only {} files in ready/", ready.len());
    for file in &ready {
        assert_tcpdump_reads(file);
    }
    let seen = census(&ready);
    let missing: Vec<u64> = (0..rate * seconds)
        .filter(|n| !seen.contains_key(n))
        .collect();
    assert!(
        missing.is_empty(),
        "{} datagrams lost with SIGUSR1 at 10 Hz, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(seen.values().all(|&c| c == 1), "a datagram in two files");
}

#[test]
fn a_taken_metrics_port_is_refused_naming_the_setting_that_moves_it() {
    if !can_capture("a_taken_metrics_port_is_refused_naming_the_setting_that_moves_it") {
        return;
    }
    let spool = Spool::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = std::process::Command::new(LAUNCHER)
        .args(["--spool-dir", spool.root().to_str().unwrap()])
        .args(["--interface", "lo", "--metrics-addr", &addr])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for needed in [
        addr.as_str(),
        "already holds this port",
        "LAUNCHER_METRICS_ADDR",
    ] {
        assert!(stderr.contains(needed), "no {needed:?} in: {stderr}");
    }
    assert!(
        Spool::files(&spool.active()).is_empty(),
        "tcpdump started although the port was taken"
    );
}
