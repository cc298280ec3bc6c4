//! The admin port under hostile clients, and when it is taken (issue 20,
//! item 4): connections, request heads and their read time are bounded, and
//! `/healthz` still answers while a crowd holds unfinished requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use test_support::*;

const UPLOADER: &str = env!("CARGO_BIN_EXE_uploader");

/// The connection cap of `admin_http::Limits::ADMIN`.
const MAX_CONNECTIONS: usize = 64;

fn loopback_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// Whether the server closed this connection (EOF or reset), without
/// waiting for it.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn healthz_answers_while_a_thousand_clients_hold_unfinished_request_heads() {
    let spool = Spool::with_capture_folders();
    let addr = loopback_addr();
    let up = Running::spawn(uploader_with_unreachable_store(UPLOADER, &spool, addr));
    wait_until(Duration::from_secs(20), "admin port", || {
        up.http("/healthz").0 == 200
    });
    let before_kib = peak_rss_kib(up.child.id());

    let mut crowd: Vec<TcpStream> = (0..1_000)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            // A request head that never ends.
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: node\r\nX-Slow: ")
                .unwrap();
            stream
        })
        .collect();

    let (status, body) = up.http("/healthz");
    assert_eq!(
        (status, body.as_str()),
        (200, "ok\n"),
        "log:\n{}",
        up.stderr()
    );
    // The healthz connection came after the crowd: every eviction it needed
    // is decided; the closes reach this side within moments.
    let mut open = usize::MAX;
    wait_until(
        Duration::from_secs(10),
        "the crowd beyond the cap to be closed",
        || {
            open = crowd
                .iter_mut()
                .filter_map(|s| (!closed_by_server(s)).then_some(()))
                .count();
            open <= MAX_CONNECTIONS
        },
    );
    assert!(
        open <= MAX_CONNECTIONS,
        "{open} unfinished connections kept"
    );
    let (_, metrics) = up.http("/metrics");
    let evicted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("s3_tcpdump_uploader_admin_connections_evicted_total "))
        .unwrap_or_else(|| panic!("no eviction counter in\n{metrics}"))
        .parse()
        .unwrap();
    assert!(
        evicted >= (1_000 - MAX_CONNECTIONS) as u64,
        "only {evicted} connections evicted"
    );
    let grown_kib = peak_rss_kib(up.child.id()).saturating_sub(before_kib);
    assert!(
        grown_kib < 16 * 1024,
        "peak RSS grew by {grown_kib} KiB with 1,000 unfinished request heads"
    );
}

#[test]
fn an_oversized_request_head_is_refused_with_431() {
    let spool = Spool::with_capture_folders();
    let addr = loopback_addr();
    let up = Running::spawn(uploader_with_unreachable_store(UPLOADER, &spool, addr));
    wait_until(Duration::from_secs(20), "admin port", || {
        up.http("/healthz").0 == 200
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: node\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    // The server may close before taking all of it.
    let _ = stream.write_all(head.as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[test]
fn an_unfinished_request_head_is_closed_after_the_header_read_timeout() {
    let spool = Spool::with_capture_folders();
    let addr = loopback_addr();
    let up = Running::spawn(uploader_with_unreachable_store(UPLOADER, &spool, addr));
    wait_until(Duration::from_secs(20), "admin port", || {
        up.http("/healthz").0 == 200
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    // Far beyond the 5 s limit, so that only a missing limit fails this.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    assert!(
        read.is_ok()
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::ConnectionReset),
        "the connection was still open after 30 s: {read:?}"
    );
}

#[test]
fn a_taken_admin_port_is_a_configuration_error_naming_the_address_and_the_setting() {
    let spool = Spool::with_capture_folders();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let out = uploader_with_unreachable_store(UPLOADER, &spool, addr)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{log}");
    for expected in [
        addr.to_string().as_str(),
        "admin port",
        "another process already holds this port",
        "METRICS_ADDR",
    ] {
        assert!(log.contains(expected), "{expected:?} missing in:\n{log}");
    }
}
