//! Real failures on loopback, captured by the real tcpdump: a TCP connect to
//! a port with no listener (reset), a UDP packet to a closed port (ICMP
//! unreachable), a DNS query to a server that never answers, a burst of
//! queries answered NXDOMAIN, one answered late, a server that accepts one
//! connection and then stalls (zero window, then a reset; the next
//! connection attempts wait in a full backlog and are retransmitted), and
//! one healthy TCP exchange. Shared by the flow index's and the `captures`
//! CLI's tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where each failure was sent.
#[derive(Debug, Clone, Copy)]
pub struct Injected {
    pub refused: SocketAddr,
    pub closed_udp: SocketAddr,
    pub silent_dns: SocketAddr,
    pub nxdomain_dns: SocketAddr,
    /// How many queries `nxdomain_dns` answered NXDOMAIN, each from its own
    /// port, within a few milliseconds: a burst.
    pub nxdomain_answers: usize,
    /// Answers after [`SLOW_DNS_ANSWER`].
    pub slow_dns: SocketAddr,
    /// Accepts one connection, never reads it (zero window), then resets
    /// it; its backlog is full, so later connection attempts are never
    /// answered and their SYNs retransmitted.
    pub stalled: SocketAddr,
    pub served: SocketAddr,
}

/// How late `slow_dns` answers.
pub const SLOW_DNS_ANSWER: Duration = Duration::from_millis(300);
/// How long the stalled server is watched: past the first SYN
/// retransmission (Linux waits 1 s).
const STALL: Duration = Duration::from_millis(1300);
const NXDOMAIN_BURST: usize = 6;

/// tshark, to compare with; prints the skip reason when it is missing.
pub fn has_tshark(test: &str) -> bool {
    let missing = (!Path::new("/usr/bin/tshark").is_file())
        .then(|| "tshark is not installed (apt-get install tshark)".to_owned());
    crate::prerequisites::present_or_skip(test, missing)
}

/// Every address the failures use, both ends: a /28 of loopback that
/// nothing else on the machine uses, so the capture filter keeps out other
/// tests' traffic.
pub const FILTER: &str = "net 127.0.0.48/28";
const CLIENT: [u8; 4] = [127, 0, 0, 50];

/// A port on `ip` nobody listens on (bound, then released).
fn closed_port(ip: [u8; 4]) -> u16 {
    TcpListener::bind(SocketAddr::from((ip, 0)))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts tcpdump writing `path` and returns once it is capturing.
pub fn start_tcpdump(path: &Path, args: &[&str], filter: &str) -> Child {
    let mut child = Command::new("tcpdump")
        .args(args)
        .args(["-n", "--immediate-mode", "-B", "16384", "-U", "-w"])
        .arg(path)
        .arg(filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if line.contains("listening on") {
            break;
        }
    }
    assert!(
        line.contains("listening on"),
        "tcpdump did not start: {line}"
    );
    // Drain the rest so tcpdump never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        eprintln!("tcpdump: {rest}");
    });
    child
}

/// Stops tcpdump as a person would (SIGINT), so it flushes and closes.
pub fn stop_tcpdump(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success() || status.code().is_none(), "{status}");
}

/// A DNS query for `example.invalid` with id `id`.
pub fn dns_query(id: u16) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["example", "invalid"] {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Makes the failures; returns where each went.
pub fn inject() -> Injected {
    let refused = SocketAddr::from(([127, 0, 0, 51], closed_port([127, 0, 0, 51])));
    let closed_udp = SocketAddr::from(([127, 0, 0, 52], closed_port([127, 0, 0, 52])));
    // Own loopback addresses for the DNS servers, so port 53 is free.
    let silent_dns = SocketAddr::from(([127, 0, 0, 53], 53));
    let nxdomain_dns = SocketAddr::from(([127, 0, 0, 54], 53));
    let slow_dns = SocketAddr::from(([127, 0, 0, 57], 53));

    // First the stalled server, whose symptoms take a second to show.
    let stall = stall_server();

    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((CLIENT, 0)).into()).unwrap();
    socket
        .connect(&refused.into())
        .expect_err("nothing listens");

    let client = UdpSocket::bind(SocketAddr::from((CLIENT, 0))).unwrap();
    client.send_to(b"probe", closed_udp).unwrap();

    let silent = UdpSocket::bind(silent_dns).expect("bind 127.0.0.53:53 (root)");
    let asker = UdpSocket::bind(SocketAddr::from((CLIENT, 0))).unwrap();
    asker.send_to(&dns_query(0x1234), silent_dns).unwrap();
    let mut buf = [0u8; 512];
    let _ = silent.recv_from(&mut buf).unwrap();

    let nx = UdpSocket::bind(nxdomain_dns).expect("bind 127.0.0.54:53 (root)");
    for i in 0..NXDOMAIN_BURST {
        let asker = UdpSocket::bind(SocketAddr::from((CLIENT, 0))).unwrap();
        asker
            .send_to(&dns_query(0x4321 + u16::try_from(i).unwrap()), nxdomain_dns)
            .unwrap();
        answer(&nx, 3, Duration::ZERO);
        asker
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = asker.recv_from(&mut buf).unwrap();
    }

    let slow = UdpSocket::bind(slow_dns).expect("bind 127.0.0.57:53 (root)");
    let asker = UdpSocket::bind(SocketAddr::from((CLIENT, 0))).unwrap();
    asker.send_to(&dns_query(0x5555), slow_dns).unwrap();
    answer(&slow, 0, SLOW_DNS_ANSWER);
    asker
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = asker.recv_from(&mut buf).unwrap();

    let listener = TcpListener::bind("127.0.0.55:0").unwrap();
    let served = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = [0u8; 5];
        s.read_exact(&mut got).unwrap();
        s.write_all(b"world").unwrap();
    });
    let mut c = TcpStream::connect(served).unwrap();
    c.write_all(b"hello").unwrap();
    let mut got = [0u8; 5];
    c.read_exact(&mut got).unwrap();
    drop(c);
    server.join().unwrap();

    let stalled = stall.finish();
    Injected {
        refused,
        closed_udp,
        silent_dns,
        nxdomain_dns,
        nxdomain_answers: NXDOMAIN_BURST,
        slow_dns,
        stalled,
        served,
    }
}

/// Answers the next query on `server` with `rcode`, `after` it came.
fn answer(server: &UdpSocket, rcode: u8, after: Duration) {
    let mut buf = [0u8; 512];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    std::thread::sleep(after);
    let mut answer = buf[..n].to_vec();
    answer[2] |= 0x80; // QR: a response
    answer[3] = (answer[3] & 0xf0) | rcode;
    server.send_to(&answer, from).unwrap();
}

/// A server that accepted one connection and stopped: it never reads, and
/// accepts no more.
struct Stall {
    at: SocketAddr,
    since: std::time::Instant,
    /// The accepted connection, never read.
    accepted: TcpStream,
    /// Its client, which wrote until the window closed.
    writer: TcpStream,
    /// Connection attempts waiting on the full backlog.
    waiting: Vec<socket2::Socket>,
    listener: socket2::Socket,
}

impl Stall {
    /// Waits until the symptoms have shown, then the server goes away with
    /// unread data (it resets the connection).
    fn finish(self) -> SocketAddr {
        let Stall {
            at,
            since,
            accepted,
            writer,
            waiting,
            listener,
        } = self;
        if let Some(rest) = STALL.checked_sub(since.elapsed()) {
            std::thread::sleep(rest);
        }
        drop(accepted);
        drop(listener);
        drop(waiting);
        drop(writer);
        at
    }
}

fn stall_server() -> Stall {
    let at = SocketAddr::from(([127, 0, 0, 56], closed_port([127, 0, 0, 56])));
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener.set_reuse_address(true).unwrap();
    // A small receive buffer closes the window after a few kilobytes.
    listener.set_recv_buffer_size(4096).unwrap();
    listener.bind(&at.into()).unwrap();
    // Backlog 0: one connection waits to be accepted, the next is dropped.
    listener.listen(0).unwrap();
    let client = |nonblocking: bool| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from((CLIENT, 0)).into()).unwrap();
        s.set_send_buffer_size(4096).unwrap();
        s.set_nonblocking(nonblocking).unwrap();
        s
    };
    let writer = client(false);
    writer.connect(&at.into()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    let mut writer: TcpStream = writer.into();
    writer.set_nonblocking(true).unwrap();
    // Write until the server's window is closed and our buffer full.
    let chunk = [0x5au8; 1024];
    let mut stuck_since = None;
    while stuck_since.is_none_or(|t: std::time::Instant| t.elapsed() < Duration::from_millis(50)) {
        match writer.write(&chunk) {
            Ok(_) => stuck_since = None,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                stuck_since.get_or_insert_with(std::time::Instant::now);
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("writing to the stalled server: {e}"),
        }
    }
    // One attempt fills the backlog; the next ones find it full.
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let s = client(true);
        let _ = s.connect(&at.into());
        waiting.push(s);
        std::thread::sleep(Duration::from_millis(20));
    }
    Stall {
        at,
        since: std::time::Instant::now(),
        accepted: accepted.into(),
        writer,
        waiting,
        listener,
    }
}
/// Captures the injected failures into `path` with tcpdump `args`.
pub fn capture(path: &Path, args: &[&str]) -> Injected {
    // Only this test's traffic: loopback addresses it uses, never others'.
    let tcpdump = start_tcpdump(path, args, FILTER);
    let injected = inject();
    // Let the last packets (FIN/ACKs) reach tcpdump.
    std::thread::sleep(Duration::from_millis(200));
    stop_tcpdump(tcpdump);
    injected
}

/// Packets of `path` matching tshark display filter `filter`.
pub fn tshark_count(path: &Path, filter: &str) -> u64 {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tshark -Y {filter}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count() as u64
}
