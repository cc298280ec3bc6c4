//! The uploader marks its connections to S3, and with the launcher's default
//! filter its uploads stay out of the captures: captures do not grow period
//! over period (issue: each capture held the upload of the one before).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use assert_cmd::prelude::*;
use nix::sys::signal::Signal;
use pcap_file::pcap::PcapReader;
use test_support::*;

const UPLOADER: &str = env!("CARGO_BIN_EXE_uploader");

fn tcpdump_path() -> Option<PathBuf> {
    ["/usr/bin/tcpdump", "/usr/sbin/tcpdump"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// A child stopped by SIGTERM and reaped, also when the test panics.
struct Stopped(Child);

impl Stopped {
    fn stop(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        self.0.wait().unwrap()
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

/// (packets, bytes on the wire) in a pcap file.
fn packets_and_bytes(path: &Path) -> (usize, u64) {
    let mut reader = PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let (mut packets, mut bytes) = (0, 0);
    while let Some(packet) = reader.next_packet() {
        packets += 1;
        bytes += u64::from(packet.unwrap().orig_len);
    }
    (packets, bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_to_s3_carry_the_upload_mark() {
    if !can_capture("uploads_to_s3_carry_the_upload_mark") {
        return;
    }
    let Some(garage) = Garage::start("uploads_to_s3_carry_the_upload_mark") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let pcap = out.path().join("marked.pcap");
    let filter = format!(
        "tcp dst port {} and ({})",
        garage.port,
        spool::upload_mark_filter()
    );
    let mut tcpdump = Stopped(
        Command::new(tcpdump_path().unwrap())
            .args(["-i", "lo", "-n", "-U", "-Z", "root", "-w"])
            .arg(&pcap)
            .arg(&filter)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(Duration::from_secs(10), "tcpdump to start", || {
        pcap.exists()
    });
    std::thread::sleep(Duration::from_millis(500));

    let spool = Spool::with_capture_folders();
    let size = 300_000;
    spool.add("20261127T100000Z.pcap", size);
    garage
        .uploader(UPLOADER, &spool)
        .arg("--once")
        .assert()
        .success();
    assert_eq!(garage.capture_keys().await.len(), 1);

    std::thread::sleep(Duration::from_millis(500));
    assert!(tcpdump.stop().success());
    let (packets, bytes) = packets_and_bytes(&pcap);
    assert!(packets > 0, "no packet to garage carried the mark");
    assert!(
        bytes >= size as u64,
        "only {bytes} bytes in {packets} marked packets for a {size}-byte upload"
    );
}

/// Runs launcher (garage's port and a steady trickle of UDP on loopback,
/// 1 s periods) and uploader together for about 12 s; returns the sizes of
/// the uploaded captures in the order they were taken.
///
/// The trickle (10 datagrams a second) stands for the node's other traffic:
/// tcpdump closes a period only when a packet arrives after it.
/// One launcher-and-uploader run at a time. On this project's VMs, two
/// tcpdumps closing their packet sockets at once have waited 20-50 s in the
/// kernel (`packet_release` → `synchronize_rcu`), long enough for the
/// launcher's stop grace to run out; one at a time they close in
/// milliseconds.
static ONE_CAPTURE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn capture_sizes_while_uploading(garage: &Garage, extra: &[&str]) -> Vec<i64> {
    let _one_at_a_time = ONE_CAPTURE_AT_A_TIME.lock().await;
    let launcher = Path::new(env!("CARGO_BIN_EXE_uploader")).with_file_name("launcher");
    assert!(
        launcher.is_file(),
        "{} is missing: build the workspace (cargo build --workspace)",
        launcher.display()
    );
    // Readable by tcpdump's own user (the fixture's root is 0755).
    let spool = Spool::with_capture_folders();

    let trickle_port = free_port();
    let stop_trickle = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = Arc::clone(&stop_trickle);
        std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            while !stop.load(Ordering::Relaxed) {
                let _ = socket.send_to(b"other traffic", ("127.0.0.1", trickle_port));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut capture = Stopped(
        Command::new(launcher)
            .args(["--spool-dir", spool.root().to_str().unwrap()])
            .args(["--interface", "lo", "--rotate-seconds", "1"])
            // Only these ports, so that other tests' traffic on loopback
            // cannot blur the measure.
            .arg("--filter")
            .arg(format!(
                "tcp port {} or udp port {trickle_port}",
                garage.port
            ))
            // The uploader's endpoint: the launcher leaves out marked TCP
            // to its port only.
            .args(["--s3-endpoint-url", garage.endpoint()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let active = spool.root().join("active");
    wait_until(Duration::from_secs(10), "the first capture", || {
        std::fs::read_dir(&active).is_ok_and(|mut entries| entries.next().is_some())
    });
    let mut uploader = Running::spawn(garage.uploader(UPLOADER, &spool));
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(capture.stop().success(), "launcher failed");
    stop_trickle.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    uploader.signal(Signal::SIGTERM);
    assert!(uploader.wait(Duration::from_secs(30)).success());

    let listed = garage
        .client()
        .await
        .list_objects_v2()
        .bucket(garage.bucket())
        .send()
        .await
        .unwrap();
    let mut objects: Vec<(String, i64)> = listed
        .contents()
        .iter()
        .map(|o| (o.key().unwrap().to_owned(), o.size().unwrap()))
        // Captures only: not their flow indexes nor the checksum probe.
        .filter(|(key, _)| key.ends_with(".pcap"))
        .collect();
    objects.sort();
    objects.into_iter().map(|(_, size)| size).collect()
}

fn mean(sizes: &[i64]) -> i64 {
    sizes.iter().sum::<i64>() / i64::try_from(sizes.len()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn captures_do_not_grow_with_the_uploads_of_earlier_captures() {
    let test = "captures_do_not_grow_with_the_uploads_of_earlier_captures";
    if !can_capture(test) {
        return;
    }
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let sizes = capture_sizes_while_uploading(&garage, &[]).await;
    eprintln!("capture sizes with the default filter: {sizes:?}");
    assert!(sizes.len() >= 8, "only {} captures: {sizes:?}", sizes.len());
    // The first capture holds the uploader's start-up probe only.
    let early = mean(&sizes[1..4]);
    let late = mean(&sizes[sizes.len() - 3..]);
    assert!(
        late <= 2 * early,
        "captures grew from about {early} to {late} bytes: {sizes:?}"
    );
}

/// The control: without the exclusion, each capture holds the upload of the
/// one before, so the measure above would fail.
#[tokio::test(flavor = "multi_thread")]
async fn with_capture_own_uploads_captures_grow() {
    let test = "with_capture_own_uploads_captures_grow";
    if !can_capture(test) {
        return;
    }
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let sizes = capture_sizes_while_uploading(&garage, &["--capture-own-uploads"]).await;
    eprintln!("capture sizes with --capture-own-uploads: {sizes:?}");
    assert!(sizes.len() >= 8, "only {} captures: {sizes:?}", sizes.len());
    let early = mean(&sizes[1..4]);
    let late = mean(&sizes[sizes.len() - 3..]);
    assert!(
        late > 2 * early,
        "captures did not grow ({early} to {late} bytes): {sizes:?}"
    );
}
