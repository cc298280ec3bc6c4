//! Shared harness for the launcher's real-tcpdump tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pcap_file::pcap::PcapReader;

#[path = "../../../tests/support/prerequisites.rs"]
mod prerequisites;
#[allow(unused_imports)]
pub use prerequisites::{can_capture, present_or_skip};

pub fn launcher() -> Command {
    Command::new(env!("CARGO_BIN_EXE_launcher"))
}

/// A spool folder in a fresh temporary directory.
pub struct Spool {
    pub dir: tempfile::TempDir,
}

impl Spool {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // tcpdump drops to its own user, which must reach the spool.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    pub fn active(&self) -> PathBuf {
        self.root().join("active")
    }
    pub fn ready(&self) -> PathBuf {
        self.root().join("ready")
    }
    pub fn files(folder: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(folder) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
    }
}

/// Starts a launcher capturing UDP to `port` on loopback.
pub fn start_capture(spool: &Spool, port: u16, extra: &[&str]) -> Child {
    start_capture_to(spool, port, extra, Stdio::inherit())
}

/// Like [`start_capture`], with the launcher's log in `<spool>/../launcher.log`
/// (read it with [`launcher_log`]).
pub fn start_capture_logged(spool: &Spool, port: u16, extra: &[&str]) -> Child {
    let log = std::fs::File::create(log_path(spool)).unwrap();
    start_capture_to(spool, port, extra, Stdio::from(log))
}

fn log_path(spool: &Spool) -> PathBuf {
    spool.root().join("launcher.log")
}

pub fn launcher_log(spool: &Spool) -> String {
    std::fs::read_to_string(log_path(spool)).unwrap_or_default()
}

fn start_capture_to(spool: &Spool, port: u16, extra: &[&str], stderr: Stdio) -> Child {
    let child = launcher()
        .args(["--spool-dir", spool.root().to_str().unwrap()])
        .args(["--interface", "lo"])
        .args(["--filter", &format!("udp dst port {port}")])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(10),
        "tcpdump to open a file in active/",
        || !Spool::files(&spool.active()).is_empty(),
    );
    // Let tcpdump finish starting (it opens the file, then installs its
    // handlers and reports that it is listening).
    std::thread::sleep(Duration::from_millis(500));
    child
}

pub fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

/// Sends numbered datagrams `first..first+count` at `rate` per second.
pub fn send_numbered(port: u16, first: u64, count: u64, rate: u64) {
    send_numbered_padded(port, first, count, rate, 0);
}

/// Like [`send_numbered`], each datagram padded with `pad` more bytes.
pub fn send_numbered_padded(port: u16, first: u64, count: u64, rate: u64, pad: usize) {
    let receiver = UdpSocket::bind(("127.0.0.1", port)).ok();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut payload = format!("s3td-seq:{:012}", first + i).into_bytes();
        payload.resize(payload.len() + pad, b'.');
        socket.send_to(&payload, ("127.0.0.1", port)).unwrap();
    }
    drop(receiver);
}

/// Reads a pcap and returns the sequence numbers of the datagrams in it.
/// Panics if the file is not a valid pcap to its last byte.
pub fn sequence_numbers(path: &Path) -> Vec<u64> {
    let file = std::fs::File::open(path).unwrap();
    let mut reader =
        PcapReader::new(file).unwrap_or_else(|e| panic!("{} is not a pcap: {e}", path.display()));
    let mut numbers = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap_or_else(|e| panic!("{} has a bad record: {e}", path.display()));
        if let Some(n) = find_sequence(&packet.data) {
            numbers.push(n);
        }
    }
    numbers
}

fn find_sequence(data: &[u8]) -> Option<u64> {
    const MARK: &[u8] = b"s3td-seq:";
    let at = data.windows(MARK.len()).position(|w| w == MARK)?;
    let digits = data.get(at + MARK.len()..at + MARK.len() + 12)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Asserts that tcpdump itself reads `file` to its end without an error.
pub fn assert_tcpdump_reads(file: &Path) {
    let out = Command::new("tcpdump")
        .args(["-r", file.to_str().unwrap(), "-n", "-q", "-w", "/dev/null"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tcpdump -r {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How many times each sequence number occurs across `files`.
pub fn census(files: &[PathBuf]) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for file in files {
        for n in sequence_numbers(file) {
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    seen
}

/// A UDP port unlikely to be used by another test running in parallel.
pub fn free_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}
