//! The default filter leaves out the uploader's own packets, so that a
//! capture never holds the upload of the capture before it, and nothing
//! else: another program's DSCP-1 packets are captured (issue 20).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use test_support::*;

const LAUNCHER: &str = env!("CARGO_BIN_EXE_launcher");
const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Sends datagrams `first..first+count` to `port` on loopback, from a socket
/// whose TOS (IPv4) or traffic class (IPv6) is `tos`. Returns false if the
/// address family is not available here.
fn send_udp_with_tos(ip: IpAddr, port: u16, first: u64, count: u64, tos: u8) -> bool {
    let Ok(socket) = UdpSocket::bind((ip, 0)) else {
        return false;
    };
    set_tos(&socket2::SockRef::from(&socket), ip, tos);
    for n in first..first + count {
        socket.send_to(&numbered_payload(n), (ip, port)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Sends numbers `first..first+count` over one TCP connection to `port`,
/// marked with `tos` once connected, as the uploader marks its sockets; a
/// segment each.
fn send_tcp_with_tos(ip: IpAddr, port: u16, first: u64, count: u64, tos: u8) {
    let mut stream = TcpStream::connect((ip, port)).unwrap();
    stream.set_nodelay(true).unwrap();
    set_tos(&socket2::SockRef::from(&stream), ip, tos);
    for n in first..first + count {
        stream.write_all(&numbered_payload(n)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn set_tos(socket: &socket2::SockRef<'_>, ip: IpAddr, tos: u8) {
    match ip {
        IpAddr::V4(_) => socket.set_tos_v4(u32::from(tos)).unwrap(),
        IpAddr::V6(_) => socket.set_tclass_v6(u32::from(tos)).unwrap(),
    }
}

/// A TCP port on loopback (IPv4 and, where it can, IPv6) that takes every
/// connection and reads it to its end; returns the port and whether IPv6
/// listens too.
fn sink_port() -> (u16, bool) {
    let v4 = TcpListener::bind((V4, 0)).unwrap();
    let port = v4.local_addr().unwrap().port();
    let v6 = TcpListener::bind((V6, port)).ok();
    let with_v6 = v6.is_some();
    for listener in std::iter::once(v4).chain(v6) {
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut stream, &mut std::io::sink());
                });
            }
        });
    }
    (port, with_v6)
}

/// Numbers captured, from a launcher told that S3 listens on one port,
/// while other programs and a stand-in uploader send marked and unmarked
/// packets; IPv6 where loopback has it.
fn capture_marked_and_unmarked(extra: &[&str]) -> (Vec<u64>, bool) {
    let spool = Spool::new();
    let udp_port = free_port();
    let (s3_port, s3_with_v6) = sink_port();
    let (other_port, _) = sink_port();
    let mut launcher = Command::new(LAUNCHER)
        .args(["--spool-dir", spool.root().to_str().unwrap()])
        .args(["--interface", "lo"])
        .arg("--filter")
        .arg(format!(
            "udp dst port {udp_port} or tcp dst port {s3_port} or tcp dst port {other_port}"
        ))
        .arg("--s3-endpoint-url")
        .arg(format!("http://127.0.0.1:{s3_port}"))
        .args(extra)
        .env("LAUNCHER_METRICS_ADDR", "127.0.0.1:0")
        .env_remove("CAPTURE_OWN_UPLOADS")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(10), "a file in active/", || {
        !Spool::files(&spool.active()).is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));

    let mark = spool::UPLOAD_TOS;
    // Other programs' datagrams, marked or not.
    assert!(send_udp_with_tos(V4, udp_port, 0, 10, mark));
    assert!(send_udp_with_tos(V4, udp_port, 100, 10, 0));
    // ECN bits set beside another DSCP must not be mistaken for the mark.
    assert!(send_udp_with_tos(V4, udp_port, 200, 10, 0x08 | 0x01));
    let with_v6 = s3_with_v6 && send_udp_with_tos(V6, udp_port, 300, 10, mark);
    if with_v6 {
        assert!(send_udp_with_tos(V6, udp_port, 400, 10, 0));
    }
    // The uploader: marked TCP to S3.
    send_tcp_with_tos(V4, s3_port, 500, 10, mark);
    // Unmarked TCP to S3, and another program's marked TCP elsewhere.
    send_tcp_with_tos(V4, s3_port, 600, 10, 0);
    send_tcp_with_tos(V4, other_port, 700, 10, mark);
    if with_v6 {
        send_tcp_with_tos(V6, s3_port, 800, 10, mark);
    }
    std::thread::sleep(Duration::from_millis(1_500));
    signal(&launcher, Signal::SIGTERM);
    assert!(launcher.wait().unwrap().success());
    let mut seen: Vec<u64> = census(&Spool::files(&spool.ready())).into_keys().collect();
    seen.sort_unstable();
    if !with_v6 {
        eprintln!("no IPv6 on loopback: only IPv4 checked");
    }
    (seen, with_v6)
}

#[test]
fn another_programs_dscp1_traffic_is_captured_and_only_marked_tcp_to_s3_is_left_out() {
    let test = "another_programs_dscp1_traffic_is_captured_and_only_marked_tcp_to_s3_is_left_out";
    if !can_capture(test) {
        return;
    }
    let (seen, with_v6) = capture_marked_and_unmarked(&[]);
    let mut expected: Vec<u64> = (0..10).chain(100..110).chain(200..210).collect();
    if with_v6 {
        expected.extend((300..310).chain(400..410));
    }
    expected.extend((600..610).chain(700..710));
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
    expected.extend((500..510).chain(600..610).chain(700..710));
    if with_v6 {
        expected.extend(800..810);
    }
    assert_eq!(seen, expected);
}
