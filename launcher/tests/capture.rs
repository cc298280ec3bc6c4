//! The launcher with the real tcpdump, capturing real datagrams on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

#[test]
fn every_datagram_lands_in_exactly_one_ready_file_across_rotations() {
    if !can_capture("every_datagram_lands_in_exactly_one_ready_file_across_rotations") {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    let mut launcher = start_capture(&spool, port, &["--rotate-seconds", "1"]);
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
    let mut launcher = start_capture(&spool, port, &["--rotate-seconds", "3600"]);
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
    let mut launcher = start_capture(&spool, port, &["--rotate-seconds", "3600"]);
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
    let mut first = start_capture(
        &spool,
        port,
        &["--rotate-seconds", "3600", "--flush-ms", "200"],
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

    let mut second = start_capture(&spool, port, &["--rotate-seconds", "3600"]);
    let ready = Spool::files(&spool.ready());
    assert_eq!(ready.len(), 1, "leftover not handed over: {ready:?}");
    assert_eq!(std::fs::metadata(&ready[0]).unwrap().len(), whole_len);
    assert_eq!(sequence_numbers(&ready[0]), (0..50).collect::<Vec<_>>());
    signal(&second, Signal::SIGTERM);
    assert!(second.wait().unwrap().success());
}

#[test]
fn a_packet_on_a_quiet_filter_reaches_disk_within_the_flush_bound() {
    if !can_capture("a_packet_on_a_quiet_filter_reaches_disk_within_the_flush_bound") {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    let mut launcher = start_capture(
        &spool,
        port,
        &["--rotate-seconds", "3600", "--flush-ms", "500"],
    );
    send_numbered(port, 7, 1, 1);
    // The bound: one flush period, plus the kernel ring's one-second block
    // timeout, plus slack for a loaded machine. Without flushing the packet
    // would stay in tcpdump's buffer for the whole hour.
    let active = Spool::files(&spool.active());
    wait_for(
        Duration::from_millis(500 + 1_000 + 2_000),
        "the packet on disk",
        || sequence_numbers(&active[0]) == [7],
    );
    signal(&launcher, Signal::SIGTERM);
    assert!(launcher.wait().unwrap().success());
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
