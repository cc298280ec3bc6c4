//! Edge paths of the spool that must never cost a capture (issue 20, item
//! 3): what in `ready/` is not a capture file, a capture that changes after
//! it was hashed, and a capture the store keeps refusing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use test_support::s3_proxy::{Answer, S3Proxy};
use test_support::*;

const UPLOADER: &str = env!("CARGO_BIN_EXE_uploader");

fn key(name: &str) -> String {
    format!("tcp-dumps/test-node/2026/11/27/12/{name}")
}

fn counter(up: &Running, name: &str) -> u64 {
    let (_, metrics) = up.http("/metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("s3_tcpdump_uploader_{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_in_ready_is_quarantined_and_later_captures_still_upload() {
    let Some(garage) = Garage::start("fifo_in_ready") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let fifo = spool.ready().join("20261127T120000Z.pcap");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut cmd = garage.uploader(UPLOADER, &spool);
    cmd.args(["--concurrency", "1"]);
    let up = Running::spawn(cmd);
    let later = spool.add("20261127T120001Z.pcap", 3000);
    wait_until(Duration::from_secs(30), "ready/ to empty", || {
        spool.ready_names().is_empty()
    });
    let quarantined = spool.root().join("quarantine/20261127T120000Z.pcap");
    let kind = std::fs::symlink_metadata(&quarantined).unwrap().file_type();
    assert!(
        std::os::unix::fs::FileTypeExt::is_fifo(&kind),
        "the FIFO was not moved to quarantine/"
    );
    assert_eq!(
        garage.get(&key("20261127T120001Z.pcap")).await.unwrap().0,
        later
    );
    assert_eq!(garage.capture_keys().await, [key("20261127T120001Z.pcap")]);
    assert_eq!(counter(&up, "quarantined_total"), 1);
    assert!(
        up.stderr().contains("a FIFO, not a capture file"),
        "{}",
        up.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_in_ready_is_quarantined_and_its_target_never_read() {
    let Some(garage) = Garage::start("symlink_in_ready") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.pcap");
    let secret_bytes = pcap_bytes(2000, "a file outside the spool");
    std::fs::write(&secret, &secret_bytes).unwrap();
    let link = spool.ready().join("20261127T120000Z.pcap");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let up = Running::spawn(garage.uploader(UPLOADER, &spool));
    let later = spool.add("20261127T120001Z.pcap", 3000);
    wait_until(Duration::from_secs(30), "ready/ to empty", || {
        spool.ready_names().is_empty()
    });
    let quarantined = spool.root().join("quarantine/20261127T120000Z.pcap");
    assert_eq!(
        std::fs::read_link(&quarantined).unwrap(),
        secret,
        "the link itself moves"
    );
    assert_eq!(
        std::fs::read(&secret).unwrap(),
        secret_bytes,
        "target changed"
    );
    assert_eq!(garage.capture_keys().await, [key("20261127T120001Z.pcap")]);
    assert_eq!(
        garage.get(&key("20261127T120001Z.pcap")).await.unwrap().0,
        later
    );
    assert_eq!(counter(&up, "quarantined_total"), 1);
}

/// Bytes appended to a capture while its single-request upload is on the
/// wire: the upload sent the old bytes, so the file is not deleted as if
/// they were all; it is hashed again and what it holds now is uploaded.
#[tokio::test(flavor = "multi_thread")]
async fn a_capture_appended_to_during_its_upload_is_hashed_again_and_its_new_content_uploaded() {
    let Some(garage) = Garage::start("appended_during_upload") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let name = "20261127T120000Z.pcap";
    // 600 kB at 100 kB/s: the upload is on the wire for about 6 s.
    let original = spool.add(name, 600_000);
    let garage_addr: SocketAddr = format!("127.0.0.1:{}", garage.port).parse().unwrap();
    let slow = throttle::start(garage_addr, 100_000);
    let mut cmd = garage.uploader(UPLOADER, &spool);
    cmd.env("S3_ENDPOINT_URL", format!("http://{slow}")).args([
        "--concurrency",
        "1",
        "--flow-index",
        "false",
    ]);
    let up = Running::spawn(cmd);
    wait_until(Duration::from_secs(10), "admin port", || {
        up.http("/healthz").0 == 200
    });
    std::thread::sleep(Duration::from_secs(2));
    // One more whole pcap record (the first one again), written in place.
    let record = &original[24..24 + 16 + 1024];
    {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(spool.ready().join(name))
            .unwrap();
        file.write_all(record).unwrap();
    }
    let mut expected = original.clone();
    expected.extend_from_slice(record);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !spool.ready_names().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "not uploaded; log:\n{}",
            up.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (body, meta) = garage.get(&key(name)).await.unwrap();
    assert!(
        body == expected,
        "the object holds {} bytes, the capture held {} when it was deleted",
        body.len(),
        expected.len()
    );
    assert_eq!(meta["sha256"], sha256_hex(&expected));
    assert!(
        up.stderr().contains("changed after it was hashed"),
        "{}",
        up.stderr()
    );
}

/// One capture the store always refuses (a policy denying its key), and
/// one upload lane: the others are uploaded all the same, and the refused
/// one stays in `ready/`.
#[tokio::test(flavor = "multi_thread")]
async fn a_capture_the_store_always_refuses_does_not_hold_up_the_others() {
    let Some(garage) = Garage::start("always_refused") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let refused = "20261127T120000Z.pcap";
    spool.add(refused, 2000);
    let garage_addr: SocketAddr = format!("127.0.0.1:{}", garage.port).parse().unwrap();
    let proxy = S3Proxy::start(Answer::DenyKeys {
        upstream: garage_addr,
        containing: "T120000Z".to_owned(),
    });
    let mut cmd = garage.uploader(UPLOADER, &spool);
    cmd.env("S3_ENDPOINT_URL", proxy.endpoint())
        .args(["--concurrency", "1"]);
    let up = Running::spawn(cmd);
    wait_until(
        Duration::from_secs(20),
        "the refused capture's first try",
        || {
            proxy
                .requests()
                .iter()
                .any(|r| r.key().contains("T120000Z"))
        },
    );
    let others: Vec<(String, Vec<u8>)> = (1..=3)
        .map(|i| {
            let name = format!("20261127T12000{i}Z.pcap");
            let bytes = spool.add(&name, 2000 + i * 100);
            (name, bytes)
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while spool.ready_names() != [refused] {
        assert!(
            std::time::Instant::now() < deadline,
            "the others were not uploaded: {:?}; log:\n{}",
            spool.ready_names(),
            up.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (name, bytes) in &others {
        assert_eq!(&garage.get(&key(name)).await.unwrap().0, bytes, "{name}");
    }
    assert!(garage.get(&key(refused)).await.is_none());
    assert!(counter(&up, "deferrals_total") >= 1);
    assert!(
        up.stderr().contains("goes to the back of the queue"),
        "{}",
        up.stderr()
    );
}
