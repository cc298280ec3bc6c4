//! The launcher with the real tcpdump, capturing real datagrams on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use nix::sys::signal::Signal;
use test_support::*;

const LAUNCHER: &str = env!("CARGO_BIN_EXE_launcher");

#[test]
fn every_datagram_lands_in_exactly_one_ready_file_across_rotations() {
    if !can_capture("every_datagram_lands_in_exactly_one_ready_file_across_rotations") {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    let mut launcher = start_capture(LAUNCHER, &spool, port, &["--rotate-seconds", "1"]);
    let (rate, seconds) = (2_500, 10);
    send_numbered(port, 0, rate * seconds, rate);
    std::thread::sleep(Duration::from_millis(2_000));
    signal(&launcher, Signal::SIGTERM);
    assert!(launcher.wait().unwrap().success());

    let ready = Spool::files(&spool.ready());
    assert!(ready.len() >= 8, "only {} files in ready/", ready.len());
    assert!(
        Spool::files(&spool.active()).is_empty(),
        "files left in active/"
    );
    let seen = census(&ready);
    let missing: Vec<u64> = (0..rate * seconds)
        .filter(|n| !seen.contains_key(n))
        .collect();
    let doubled: Vec<(&u64, &usize)> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        missing.is_empty(),
        "{} datagrams missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        doubled.is_empty(),
        "datagrams in more than one file: {doubled:?}"
    );
    for file in &ready {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            spool::CaptureName::parse_ready(name).is_ok(),
            "bad ready name {name}"
        );
    }
}

#[test]
fn sigterm_hands_over_the_last_file() {
    if !can_capture("sigterm_hands_over_the_last_file") {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    let mut launcher = start_capture(LAUNCHER, &spool, port, &["--rotate-seconds", "3600"]);
    send_numbered(port, 0, 20, 100);
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(
        Spool::files(&spool.ready()).is_empty(),
        "handed over before it was closed"
    );
    signal(&launcher, Signal::SIGTERM);
    let status = launcher.wait().unwrap();
    assert!(status.success(), "launcher exited with {status}");
    let ready = Spool::files(&spool.ready());
    assert_eq!(ready.len(), 1, "{ready:?}");
    assert_eq!(sequence_numbers(&ready[0]), (0..20).collect::<Vec<_>>());
    assert!(Spool::files(&spool.active()).is_empty());
}

#[test]
fn sigterm_right_after_traffic_loses_no_packet() {
    if !can_capture("sigterm_right_after_traffic_loses_no_packet") {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    let mut launcher = start_capture(LAUNCHER, &spool, port, &["--rotate-seconds", "3600"]);
    send_numbered(port, 0, 1_000, 2_000);
    std::thread::sleep(Duration::from_millis(100));
    signal(&launcher, Signal::SIGTERM);
    assert!(launcher.wait().unwrap().success());
    let seen = census(&Spool::files(&spool.ready()));
    let missing: Vec<u64> = (0..1_000).filter(|n| !seen.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "{} datagrams lost at stop: {:?}…",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

#[test]
fn leftover_of_a_killed_capture_is_trimmed_and_handed_over_at_next_start() {
    if !can_capture("leftover_of_a_killed_capture_is_trimmed_and_handed_over_at_next_start") {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    // Per-packet mode: every packet is in the file before the kill.
    let mut first = start_capture(
        LAUNCHER,
        &spool,
        port,
        &["--rotate-seconds", "3600", "--capture-mode", "per-packet"],
    );
    send_numbered(port, 0, 50, 200);
    std::thread::sleep(Duration::from_millis(1_500));
    // SIGKILL leaves no chance to clean up; tcpdump runs in its own process
    // group, so kill it too, as a container runtime would.
    let tcpdump_group = tcpdump_child_of(first.id());
    signal(&first, Signal::SIGKILL);
    first.wait().unwrap();
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(tcpdump_group), Signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let leftovers = Spool::files(&spool.active());
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    let whole_len = std::fs::metadata(&leftovers[0]).unwrap().len();
    // A torn last record, as a write cut short would leave it.
    let mut torn = std::fs::read(&leftovers[0]).unwrap();
    torn.extend_from_slice(&[0x11; 23]);
    std::fs::write(&leftovers[0], &torn).unwrap();

    let mut second = start_capture(LAUNCHER, &spool, port, &["--rotate-seconds", "3600"]);
    let ready = Spool::files(&spool.ready());
    assert_eq!(ready.len(), 1, "leftover not handed over: {ready:?}");
    assert_eq!(std::fs::metadata(&ready[0]).unwrap().len(), whole_len);
    assert_eq!(sequence_numbers(&ready[0]), (0..50).collect::<Vec<_>>());
    signal(&second, Signal::SIGTERM);
    assert!(second.wait().unwrap().success());
}

#[test]
fn a_quiet_filter_still_rotates_every_period_and_each_file_is_ready_within_two_seconds() {
    if !can_capture("a_quiet_filter_still_rotates") {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    let rotate = 2;
    let mut launcher = start_capture(
        LAUNCHER,
        &spool,
        port,
        &["--rotate-seconds", &rotate.to_string()],
    );
    // One packet, then silence: without the tick it would sit in active/
    // until the next matching packet, which never comes.
    send_numbered(port, 7, 1, 1);
    wait_until(
        // The period, the 2 s the launcher promises, and slack for a loaded machine.
        Duration::from_secs(rotate + 2 + 3),
        "the file holding the packet to be in ready/",
        || census(&Spool::files(&spool.ready())).contains_key(&7),
    );
    // Files keep coming with no traffic at all.
    let before = Spool::files(&spool.ready()).len();
    std::thread::sleep(Duration::from_secs(3 * rotate));
    let after = Spool::files(&spool.ready()).len();
    signal(&launcher, Signal::SIGTERM);
    assert!(launcher.wait().unwrap().success());
    assert!(
        after >= before + 2,
        "only {} files handed over in {} s of silence",
        after - before,
        3 * rotate
    );
    for file in Spool::files(&spool.ready()) {
        assert_tcpdump_reads(&file);
    }
}

#[test]
fn twenty_thousand_datagrams_a_second_for_a_minute_land_whole_once_each() {
    if !can_capture("twenty_thousand_datagrams_a_second") {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    let mut launcher = start_capture_logged(LAUNCHER, &spool, port, &["--rotate-seconds", "1"]);
    let (rate, seconds) = (20_000, 60);
    send_numbered(port, 0, rate * seconds, rate);
    std::thread::sleep(Duration::from_millis(2_000));
    signal(&launcher, Signal::SIGTERM);
    assert!(launcher.wait().unwrap().success());

    let ready = Spool::files(&spool.ready());
    assert!(ready.len() >= 50, "only {} files in ready/", ready.len());
    // Strictly: every record of every file (the pcap-file reader panics on
    // a bad one), and tcpdump's own reader to the end.
    for file in &ready {
        assert_tcpdump_reads(file);
    }
    let seen = census(&ready);
    let log = launcher_log(&spool);
    let missing: Vec<u64> = (0..rate * seconds)
        .filter(|n| !seen.contains_key(n))
        .collect();
    let doubled = seen.values().filter(|c| **c > 1).count();
    assert!(
        missing.is_empty(),
        "{} of {} datagrams missing, first {:?}; launcher log:\n{log}",
        missing.len(),
        rate * seconds,
        &missing[..missing.len().min(10)]
    );
    assert_eq!(doubled, 0, "datagrams in more than one file");
}

/// The launcher's metrics port's answer to `path`.
fn metrics_port(addr: &str, path: &str) -> (u16, String) {
    http_get(addr.parse().unwrap(), path)
}

#[test]
fn a_buffered_tcpdump_killed_loses_at_most_its_buffer_and_its_file_is_handed_over_whole() {
    if !can_capture("a_buffered_tcpdump_killed_loses_at_most_its_buffer") {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    let args = ["--rotate-seconds", "3600", "--capture-mode", "buffered"];
    let mut first = start_capture(LAUNCHER, &spool, port, &args);
    let sent = 3_000;
    send_numbered(port, 0, sent, 3_000);
    // Long enough for tcpdump to take every packet from the kernel (its
    // read timeout is 1 s): what is lost is then only its own buffer.
    std::thread::sleep(Duration::from_millis(2_500));
    let tcpdump_group = tcpdump_child_of(first.id());
    signal(&first, Signal::SIGKILL);
    first.wait().unwrap();
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(tcpdump_group), Signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let leftovers = Spool::files(&spool.active());
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(&leftovers[0]).unwrap();
    let block = meta.blksize();
    // tcpdump wrote whole buffers only: its buffer is the block size.
    assert_eq!(meta.len() % block, 0, "{} bytes, block {block}", meta.len());
    assert!(meta.len() > 0);

    let mut second = start_capture(LAUNCHER, &spool, port, &args);
    let ready = Spool::files(&spool.ready());
    assert_eq!(ready.len(), 1, "leftover not handed over: {ready:?}");
    assert_tcpdump_reads(&ready[0]);
    let found = sequence_numbers(&ready[0]);
    // A prefix of what was sent, in order: nothing damaged, nothing torn.
    assert_eq!(found, (0..found.len() as u64).collect::<Vec<_>>());
    let record = numbered_payload(0).len() as u64 + 14 + 20 + 8 + 16;
    let lost = sent - found.len() as u64;
    assert!(
        lost <= block / record + 1,
        "lost {lost} datagrams of {record} bytes on disk, more than a {block}-byte buffer holds"
    );
    signal(&second, Signal::SIGTERM);
    assert!(second.wait().unwrap().success());
}

#[test]
fn a_stopped_tcpdump_is_reported_and_fails_the_liveness_probe_in_buffered_mode() {
    stopped_tcpdump_is_reported("buffered");
}

#[test]
fn a_stopped_tcpdump_is_reported_and_fails_the_liveness_probe_in_per_packet_mode() {
    stopped_tcpdump_is_reported("per-packet");
}

fn stopped_tcpdump_is_reported(mode: &str) {
    if !can_capture("a_stopped_tcpdump_is_reported") {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut launcher = start_capture_logged(
        LAUNCHER,
        &spool,
        port,
        &[
            "--rotate-seconds",
            "60",
            "--metrics-addr",
            &addr,
            "--capture-mode",
            mode,
        ],
    );
    let probe = || {
        std::process::Command::new(LAUNCHER)
            .args(["--probe", "--spool-dir", spool.root().to_str().unwrap()])
            .output()
            .unwrap()
    };
    wait_until(Duration::from_secs(5), "a healthy probe", || {
        probe().status.success()
    });
    let tcpdump = nix::unistd::Pid::from_raw(tcpdump_child_of(launcher.id()));
    nix::sys::signal::kill(tcpdump, Signal::SIGSTOP).unwrap();
    let stopped = std::time::Instant::now();
    wait_until(Duration::from_secs(30), "the stall in the log", || {
        launcher_log(&spool).contains(launcher::stall::STALLED_LOG)
    });
    wait_until(
        Duration::from_secs(30).saturating_sub(stopped.elapsed()),
        "the probe to fail",
        || !probe().status.success(),
    );
    let verdict = String::from_utf8(probe().stdout).unwrap();
    assert!(verdict.starts_with("stalled"), "{verdict}");
    // The metrics port says the same (issue 23).
    let (_, metrics) = metrics_port(&addr, "/metrics");
    assert!(
        metrics.contains("\ns3_tcpdump_launcher_stalled 1\n"),
        "{metrics}"
    );
    assert_eq!(metrics_port(&addr, "/healthz").0, 503);
    nix::sys::signal::kill(tcpdump, Signal::SIGCONT).unwrap();
    wait_until(Duration::from_secs(10), "the probe to pass again", || {
        probe().status.success()
    });
    wait_until(Duration::from_secs(5), "the stall gauge back to 0", || {
        metrics_port(&addr, "/metrics")
            .1
            .contains("\ns3_tcpdump_launcher_stalled 0\n")
    });
    assert_eq!(metrics_port(&addr, "/healthz").0, 200);
    signal(&launcher, Signal::SIGTERM);
    assert!(launcher.wait().unwrap().success());
}

#[test]
fn the_live_file_is_never_handed_over_whatever_sorts_after_it_or_touches_it() {
    if !can_capture("the_live_file_is_never_handed_over") {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    let mut launcher = start_capture(LAUNCHER, &spool, port, &["--rotate-seconds", "3600"]);
    send_numbered(port, 0, 100, 1_000);
    let live = Spool::files(&spool.active()).remove(0);
    // A stray that sorts after the live file (a clock stepped backwards
    // across a restart): name order would call the live file closed.
    let stray = spool.active().join("20991231T235959Z.pcap");
    std::fs::write(&stray, b"not a capture at all").unwrap();
    // Someone opens the live file for writing and closes it again.
    drop(
        std::fs::OpenOptions::new()
            .append(true)
            .open(&live)
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(
        live.exists(),
        "the live file left active/ while tcpdump wrote it"
    );
    assert!(
        Spool::files(&spool.ready()).is_empty(),
        "handed over: {:?}",
        Spool::files(&spool.ready())
    );
    let quarantined = Spool::files(&spool.root().join("quarantine"));
    assert_eq!(
        quarantined.len(),
        1,
        "the stray is not in quarantine/: {quarantined:?}"
    );
    send_numbered(port, 100, 100, 1_000);
    signal(&launcher, Signal::SIGTERM);
    assert!(launcher.wait().unwrap().success());
    let ready = Spool::files(&spool.ready());
    assert_eq!(ready.len(), 1, "{ready:?}");
    assert_eq!(sequence_numbers(&ready[0]), (0..200).collect::<Vec<_>>());
}

#[test]
fn with_the_uploader_away_the_capture_side_keeps_the_spool_in_budget() {
    if !can_capture("with_the_uploader_away_the_capture_side_keeps_the_spool_in_budget") {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    let mut launcher = start_capture_logged(
        LAUNCHER,
        &spool,
        port,
        &["--rotate-seconds", "1", "--max-spool-mb", "1"],
    );
    // About 0.5 MB a second into a 1 MiB budget, with nobody uploading.
    let sender = std::thread::spawn(move || send_numbered_padded(port, 0, 8_000, 1_000, 500));
    let usage = || -> u64 {
        ["active", "ready", "quarantine"]
            .iter()
            .flat_map(|d| Spool::files(&spool.root().join(d)))
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum()
    };
    let mut peak = 0;
    while !sender.is_finished() {
        peak = peak.max(usage());
        std::thread::sleep(Duration::from_millis(100));
    }
    sender.join().unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    peak = peak.max(usage());
    signal(&launcher, Signal::SIGTERM);
    assert!(launcher.wait().unwrap().success());
    let log = launcher_log(&spool);
    let drops = log.matches(launcher::budget::DROPPED_LOG).count();
    assert!(drops >= 3, "only {drops} drops logged:\n{log}");
    // The launcher's limit (budget + 10 %) plus the file being written.
    let limit = 1024 * 1024 * 11 / 10 + 700_000;
    assert!(peak <= limit, "spool reached {peak} bytes, limit {limit}");
    for file in Spool::files(&spool.ready()) {
        assert_tcpdump_reads(&file);
    }
}

/// The pid of tcpdump, the launcher's child (it leads its own group).
fn tcpdump_child_of(launcher: u32) -> i32 {
    let children =
        std::fs::read_to_string(format!("/proc/{launcher}/task/{launcher}/children")).unwrap();
    children
        .split_whitespace()
        .next()
        .expect("launcher has no child")
        .parse()
        .unwrap()
}

#[test]
fn every_capture_handed_over_carries_its_drop_counts_over_intervals_that_follow_each_other() {
    if !can_capture("every_capture_handed_over_carries_its_drop_counts") {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    let mut launcher = start_capture(
        LAUNCHER,
        &spool,
        port,
        &["--rotate-seconds", "1", "--stats-interval-ms", "200"],
    );
    send_numbered(port, 0, 3_000, 1_000);
    std::thread::sleep(Duration::from_millis(1_500));
    signal(&launcher, Signal::SIGTERM);
    assert!(launcher.wait().unwrap().success());

    let layout = spool.layout();
    let ready = Spool::files(&spool.ready());
    assert!(ready.len() >= 3, "{ready:?}");
    let mut records: Vec<spool::counters::CaptureCounters> = ready
        .iter()
        .map(|file| {
            let name = file.file_name().unwrap().to_str().unwrap();
            spool::counters::read(&layout.counters_record(name))
                .unwrap_or_else(|| panic!("no drop-count record for {name}"))
        })
        .collect();
    records.sort_by_key(|r| (r.from, r.to));
    for pair in records.windows(2) {
        assert_eq!(pair[0].to, pair[1].from, "{records:?}");
    }
    assert!(records.iter().all(|r| r.from <= r.to), "{records:?}");
}
