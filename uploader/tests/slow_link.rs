//! A slow link that keeps moving is never cut off: timeouts bound silence,
//! not size (issue 8).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use test_support::*;

const UPLOADER: &str = env!("CARGO_BIN_EXE_uploader");

#[tokio::test(flavor = "multi_thread")]
async fn upload_slower_than_the_read_timeout_completes_when_bytes_keep_moving() {
    let Some(garage) = Garage::start("upload_slower_than_the_read_timeout") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let (name, start) = name_started_ago(Duration::from_secs(60));
    // 2 Mbit/s and a 4 MiB capture: about 17 s for a body, with a read
    // timeout of 5 s. Bounded by size, every attempt would time out for ever.
    let bytes = spool.add(&name, 4 * 1024 * 1024);
    let garage_addr: std::net::SocketAddr = format!("127.0.0.1:{}", garage.port).parse().unwrap();
    let slow = throttle::start(garage_addr, 2_000_000 / 8);
    let mut cmd = garage.uploader(UPLOADER, &spool);
    cmd.env("S3_ENDPOINT_URL", format!("http://{slow}"))
        .env("UPLOADER_READ_TIMEOUT_MS", "5000");
    let up = Running::spawn(cmd);

    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !spool.ready_names().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "not uploaded over the slow link; log:\n{}",
            up.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let key = format!("tcp-dumps/test-node/{}/{name}", start.format("%Y/%m/%d/%H"));
    let (body, meta) = garage.get(&key).await.expect("uploaded");
    assert_eq!(body, bytes);
    assert_eq!(meta["sha256"], sha256_hex(&bytes));
    let (_, metrics) = up.http("/metrics");
    assert!(
        !metrics.contains("kind=\"timeout\""),
        "an attempt timed out although bytes kept moving:\n{metrics}\n{}",
        up.stderr()
    );
}
