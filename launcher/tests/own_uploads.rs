//! The default filter leaves out packets carrying the uploader's mark, so
//! that a capture never holds the upload of the capture before it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::Duration;

use nix::sys::signal::Signal;
use test_support::*;

const LAUNCHER: &str = env!("CARGO_BIN_EXE_launcher");

/// Sends datagrams `first..first+count` to `port` on loopback, from a socket
/// whose TOS (IPv4) or traffic class (IPv6) is `tos`. Returns false if the
/// address family is not available here.
fn send_with_tos(ip: IpAddr, port: u16, first: u64, count: u64, tos: u8) -> bool {
    let Ok(socket) = UdpSocket::bind((ip, 0)) else {
        return false;
    };
    let sock = socket2::SockRef::from(&socket);
    match ip {
        IpAddr::V4(_) => sock.set_tos_v4(u32::from(tos)).unwrap(),
        IpAddr::V6(_) => sock.set_tclass_v6(u32::from(tos)).unwrap(),
    }
    for n in first..first + count {
        socket.send_to(&numbered_payload(n), (ip, port)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Captures marked and unmarked datagrams over IPv4 and, where loopback has
/// it, IPv6; returns the sequence numbers captured and whether IPv6 ran.
fn capture_marked_and_unmarked(extra: &[&str]) -> (Vec<u64>, bool) {
    let spool = Spool::new();
    let port = free_port();
    let mut launcher = start_capture(LAUNCHER, &spool, port, extra);
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert!(send_with_tos(v4, port, 0, 10, spool::UPLOAD_TOS));
    assert!(send_with_tos(v4, port, 100, 10, 0));
    // ECN bits set beside another DSCP must not be mistaken for the mark.
    assert!(send_with_tos(v4, port, 200, 10, 0x08 | 0x01));
    let with_v6 = send_with_tos(v6, port, 300, 10, spool::UPLOAD_TOS);
    if with_v6 {
        assert!(send_with_tos(v6, port, 400, 10, 0));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    signal(&launcher, Signal::SIGTERM);
    assert!(launcher.wait().unwrap().success());
    let mut seen: Vec<u64> = census(&Spool::files(&spool.ready())).into_keys().collect();
    seen.sort_unstable();
    (seen, with_v6)
}

#[test]
fn packets_with_the_upload_mark_are_left_out_by_default() {
    if !can_capture("packets_with_the_upload_mark_are_left_out_by_default") {
        return;
    }
    let (seen, with_v6) = capture_marked_and_unmarked(&[]);
    let mut expected: Vec<u64> = (100..110).chain(200..210).collect();
    if with_v6 {
        expected.extend(400..410);
    } else {
        eprintln!("no IPv6 on loopback: only IPv4 checked");
    }
    assert_eq!(seen, expected);
}

#[test]
fn capture_own_uploads_keeps_the_marked_packets() {
    if !can_capture("capture_own_uploads_keeps_the_marked_packets") {
        return;
    }
    let (seen, with_v6) = capture_marked_and_unmarked(&["--capture-own-uploads"]);
    let mut expected: Vec<u64> = (0..10).chain(100..110).chain(200..210).collect();
    if with_v6 {
        expected.extend((300..310).chain(400..410));
    }
    assert_eq!(seen, expected);
}
