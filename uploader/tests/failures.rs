//! Outages, crashes, bad credentials and a full spool: nothing is deleted
//! that S3 did not confirm, and everything arrives once it can.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use assert_cmd::prelude::*;
use nix::sys::signal::Signal;
use predicates::prelude::*;
use test_support::*;

const UPLOADER: &str = env!("CARGO_BIN_EXE_uploader");

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn uploads_resume_after_outage_without_restart() {
    let Some(mut garage) = Garage::start("outage") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let up = Running::spawn(garage.uploader(UPLOADER, &spool));
    let first = spool.add("20261127T130000Z.pcap", 2000);
    wait_until(Duration::from_secs(20), "first upload", || {
        spool.ready_names().is_empty()
    });

    garage.stop();
    let mut sent = vec![("20261127T130000Z.pcap".to_owned(), first)];
    for i in 1..=4 {
        let name = format!("20261127T13000{i}Z.pcap");
        sent.push((name.clone(), spool.add(&name, 3000 + i * 100)));
        std::thread::sleep(Duration::from_millis(400));
    }
    assert_eq!(
        spool.ready_names().len(),
        4,
        "a capture was deleted during the outage"
    );

    garage.restart();
    wait_until(Duration::from_secs(30), "backlog to drain", || {
        spool.ready_names().is_empty()
    });
    for (name, bytes) in &sent {
        let (body, meta) = garage
            .get(&format!("tcp-dumps/test-node/2026/11/27/13/{name}"))
            .await
            .unwrap_or_else(|| panic!("{name} missing after the outage"));
        assert_eq!(&body, bytes);
        assert_eq!(meta["sha256"], sha256_hex(bytes));
    }
    let (_, metrics) = up.http("/metrics");
    assert!(
        metrics.contains("s3_tcpdump_uploader_uploaded_files_total 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("s3_tcpdump_uploader_failures_total{kind=\"connection\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_multipart_then_restart_completes_the_object() {
    let Some(garage) = Garage::start("sigkill_resume") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let name = "20261127T140000Z.pcap";
    let bytes = spool.add(name, 40 * MIB + 777);
    let args = [
        "--multipart-threshold-mb",
        "5",
        "--part-size-mb",
        "5",
        "--concurrency",
        "1",
    ];
    let mut cmd = garage.uploader(UPLOADER, &spool);
    cmd.args(args);
    let mut up = Running::spawn(cmd);
    let record = spool.root().join("state").join(format!("{name}.json"));
    wait_until(Duration::from_secs(60), "resume record", || record.exists());
    let upload_id: String = {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
        json["upload_id"].as_str().unwrap().to_owned()
    };
    let key = format!("tcp-dumps/test-node/2026/11/27/14/{name}");
    let client = garage.client().await;
    // Kill once S3 holds at least two parts, well before the last.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let parts = client
            .list_parts()
            .bucket(garage.bucket())
            .key(&key)
            .upload_id(&upload_id)
            .send()
            .await
            .map(|p| p.parts().len())
            .unwrap_or(0);
        if parts >= 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no parts uploaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    up.signal(Signal::SIGKILL);
    up.wait(Duration::from_secs(5));
    assert!(spool.ready_names().contains(&name.to_owned()));
    assert!(
        garage.get(&key).await.is_none(),
        "object complete before the kill"
    );

    let mut cmd = garage.uploader(UPLOADER, &spool);
    cmd.args(args).arg("--once");
    let out = cmd.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("resuming multipart upload"), "{log}");
    let held: usize = log
        .split("parts_held=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(held >= 2, "parts S3 already held were not reused: {log}");
    let (body, meta) = garage.get(&key).await.unwrap();
    assert!(body == bytes, "resumed object differs from the capture");
    assert_eq!(meta["sha256"], sha256_hex(&bytes));
    assert!(!record.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_unknown_to_s3_is_started_over_cleanly() {
    let Some(garage) = Garage::start("stale_record") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let name = "20261127T150000Z.pcap";
    let bytes = spool.add(name, 6 * MIB);
    let state = spool.root().join("state");
    std::fs::create_dir(&state).unwrap();
    let key = format!("tcp-dumps/test-node/2026/11/27/15/{name}");
    std::fs::write(
        state.join(format!("{name}.json")),
        serde_json::json!({
            "version": 1, "bucket": garage.bucket(), "key": key,
            "upload_id": "0000000000000000000000000000000000000000000000000000000000000000",
            "size": bytes.len(), "part_size": 5 * MIB,
            "sha256": sha256_hex(&bytes),
        })
        .to_string(),
    )
    .unwrap();
    garage
        .uploader(UPLOADER, &spool)
        .args([
            "--once",
            "--multipart-threshold-mb",
            "5",
            "--part-size-mb",
            "5",
        ])
        .assert()
        .success();
    assert!(garage.get(&key).await.unwrap().0 == bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_and_missing_bucket_keep_files_and_are_not_ready() {
    let Some(garage) = Garage::start("permanent") else {
        return;
    };
    for (what, var, value, expect) in [
        (
            "wrong secret",
            "AWS_SECRET_ACCESS_KEY",
            "0".repeat(64),
            "signature_mismatch",
        ),
        (
            "unknown key",
            "AWS_ACCESS_KEY_ID",
            "GK000000000000000000000000".to_owned(),
            "invalid_credentials",
        ),
        (
            "missing bucket",
            "S3_BUCKET",
            "no-such-bucket".to_owned(),
            "no_such_bucket",
        ),
    ] {
        let spool = Spool::with_capture_folders();
        spool.add("20261127T160000Z.pcap", 1000);
        let mut cmd = garage.uploader(UPLOADER, &spool);
        cmd.env(var, &value);
        let up = Running::spawn(cmd);
        wait_until(Duration::from_secs(10), "admin endpoint", || {
            up.http("/healthz").0 == 200
        });
        wait_until(Duration::from_secs(10), "failure to be counted", || {
            up.http("/metrics")
                .1
                .contains(&format!("kind=\"{expect}\""))
        });
        let (status, body) = up.http("/readyz");
        assert_eq!(status, 503, "{what}: {body}");
        assert!(body.contains(expect), "{what}: {body}");
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            spool.ready_names(),
            ["20261127T160000Z.pcap"],
            "{what}: file not kept"
        );
        let log = up.stderr();
        assert!(log.contains("hint"), "{what}: no hint in log:\n{log}");
        // Logged once per change, not once per retry.
        assert_eq!(
            log.matches("uploads are failing").count(),
            1,
            "{what}:\n{log}"
        );
    }
    let spool = Spool::with_capture_folders();
    garage
        .uploader(UPLOADER, &spool)
        .arg("--check")
        .env("S3_BUCKET", "no-such-bucket")
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("NoSuchBucket")
                .and(predicate::str::contains("create the bucket")),
        );
}

#[tokio::test(flavor = "multi_thread")]
async fn once_exits_nonzero_listing_what_is_left_when_store_is_down() {
    let Some(garage) = Garage::start("once_down") else {
        return;
    };
    garage.stop();
    let spool = Spool::with_capture_folders();
    spool.add("20261127T170000Z.pcap", 1000);
    garage
        .uploader(UPLOADER, &spool)
        .arg("--once")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("20261127T170000Z.pcap"));
    assert_eq!(spool.ready_names(), ["20261127T170000Z.pcap"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn spool_budget_drops_oldest_waiting_captures_and_counts_them() {
    let Some(garage) = Garage::start("budget") else {
        return;
    };
    garage.stop();
    let spool = Spool::with_capture_folders();
    let size = 400 * 1024;
    let names: Vec<String> = (0..4).map(|i| format!("20261127T18000{i}Z.pcap")).collect();
    for name in &names {
        spool.add(name, size);
    }
    let actual: u64 = names
        .iter()
        .map(|n| std::fs::metadata(spool.ready().join(n)).unwrap().len())
        .sum();
    let mut cmd = garage.uploader(UPLOADER, &spool);
    cmd.args(["--max-spool-mb", "1", "--concurrency", "1"]);
    let up = Running::spawn(cmd);
    wait_until(Duration::from_secs(10), "drops", || {
        spool.ready_names().len() == 2
    });
    std::thread::sleep(Duration::from_millis(600));
    let left = spool.ready_names();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.contains(&names[3]),
        "newest capture was dropped: {left:?}"
    );
    let kept: u64 = left
        .iter()
        .map(|n| std::fs::metadata(spool.ready().join(n)).unwrap().len())
        .sum();
    assert!(kept <= 1024 * 1024);
    let (_, metrics) = up.http("/metrics");
    assert!(
        metrics.contains("s3_tcpdump_uploader_dropped_files_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "s3_tcpdump_uploader_dropped_bytes_total {}",
            actual - kept
        )),
        "{metrics}"
    );
    assert!(up.stderr().contains("dropped the oldest waiting capture"));
}
