//! What lands in the bucket, under which key, with which checksum.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use assert_cmd::prelude::*;
use aws_sdk_s3::types::ChecksumMode;
use predicates::prelude::*;
use test_support::*;

const UPLOADER: &str = env!("CARGO_BIN_EXE_uploader");

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn uploads_capture_verified_then_deletes_it_and_serves_probes() {
    let Some(garage) = Garage::start("uploads_capture_verified") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    // Started three hours ago: lands under its capture hour, not now's.
    let (name, start) = name_started_ago(Duration::from_secs(3 * 3600 + 120));
    let bytes = spool.add(&name, 300_000);
    let mut cmd = garage.uploader(UPLOADER, &spool);
    // These machines set AWS_CA_BUNDLE; a plain-HTTP endpoint must not care.
    cmd.env("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt");
    let up = Running::spawn(cmd);

    wait_until(Duration::from_secs(30), "ready/ to empty", || {
        spool.ready_names().is_empty()
    });
    let key = format!("tcp-dumps/test-node/{}/{name}", start.format("%Y/%m/%d/%H"));
    let (body, meta) = garage.get(&key).await.expect("object under capture hour");
    assert_eq!(body, bytes, "uploaded bytes differ from the capture");
    assert_eq!(meta["sha256"], sha256_hex(&bytes));
    assert_eq!(meta["node"], "test-node");
    assert_eq!(
        meta["capture-start"],
        start.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
    // Its flow index, written in the same read, lies under the index prefix.
    let index = format!(
        "tcp-dumps/index/node=test-node/date={}/hour={}/{name}.jsonl.gz",
        start.format("%Y-%m-%d"),
        start.format("%H")
    );
    assert!(
        garage.get(&index).await.is_some(),
        "no flow index at {index}: {:?}",
        garage.keys().await
    );
    // Checked in the read that hashed it: every record whole.
    assert_eq!(meta["pcap"], "ok");
    assert_eq!(
        meta["packets"],
        ((bytes.len() - 24) / (16 + 1024)).to_string()
    );
    assert_eq!(meta["first-packet"], "1970-01-01T00:00:01.000000Z");

    wait_until(Duration::from_secs(10), "readiness", || {
        up.http("/readyz").0 == 200
    });
    assert_eq!(up.http("/healthz").0, 200);
    let (status, metrics) = up.http("/metrics");
    assert_eq!(status, 200);
    for line in [
        "s3_tcpdump_uploader_uploaded_files_total 1",
        &format!("s3_tcpdump_uploader_uploaded_bytes_total {}", bytes.len()),
        "s3_tcpdump_uploader_upload_duration_seconds_count 1",
        "s3_tcpdump_uploader_oldest_pending_age_seconds",
        "s3_tcpdump_uploader_spool_bytes",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn file_over_threshold_goes_multipart_with_composite_checksum() {
    let Some(garage) = Garage::start("multipart") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let name = "20261127T142503Z-0001.pcap";
    let bytes = spool.add(name, 12 * MIB + 12345);
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
    assert!(spool.ready_names().is_empty());
    assert!(
        std::fs::read_dir(spool.root().join("state"))
            .unwrap()
            .next()
            .is_none(),
        "resume record left behind"
    );
    let key = format!("tcp-dumps/test-node/2026/11/27/14/{name}");
    let (body, meta) = garage.get(&key).await.unwrap();
    assert_eq!(body.len(), bytes.len());
    assert!(body == bytes, "multipart object differs from the capture");
    assert_eq!(meta["sha256"], sha256_hex(&bytes));
    let head = garage
        .client()
        .await
        .head_object()
        .bucket(garage.bucket())
        .key(&key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    let checksum = head.checksum_sha256().unwrap_or_default().to_owned();
    assert!(
        checksum.ends_with("-3"),
        "not a 3-part upload: {checksum:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_template_placeholders_come_from_env_and_capture_start() {
    let Some(garage) = Garage::start("key_template") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    spool.add("20250102T030405Z.pcap", 1000);
    garage
        .uploader(UPLOADER, &spool)
        .args([
            "--once",
            "--key-template",
            "{cluster}/{namespace}/{pod}/{node}/{yyyy}{mm}{dd}/{hh}{mi}/{file}",
        ])
        .env("CLUSTER_NAME", "prod")
        .env("POD_NAMESPACE", "s3-tcpdump")
        .env("POD_NAME", "pod-1")
        .assert()
        .success();
    assert_eq!(
        garage.capture_keys().await,
        ["prod/s3-tcpdump/pod-1/test-node/20250102/0304/20250102T030405Z.pcap"]
    );
}

#[test]
fn unknown_placeholder_is_refused_at_start() {
    let spool = Spool::with_capture_folders();
    std::process::Command::new(env!("CARGO_BIN_EXE_uploader"))
        .args(["--bucket", "b", "--key-template", "dumps/{host}/{file}"])
        .env("SPOOL_DIR", spool.root())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("{host}").and(predicate::str::contains("{node}")));
}

#[test]
fn key_template_without_a_per_node_placeholder_is_refused_at_start() {
    let spool = Spool::with_capture_folders();
    std::process::Command::new(env!("CARGO_BIN_EXE_uploader"))
        .args(["--bucket", "b", "--key-template", "tcp-dumps/{yyyy}/{file}"])
        .env("SPOOL_DIR", spool.root())
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("per-node placeholder")
                .and(predicate::str::contains("{instance_id}"))
                .and(predicate::str::contains("overwrite")),
        );
}

#[test]
fn part_size_below_five_mb_is_refused() {
    std::process::Command::new(env!("CARGO_BIN_EXE_uploader"))
        .args(["--bucket", "b", "--part-size-mb", "4"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("5 MB"));
}

#[test]
fn missing_spool_is_refused_naming_path_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    std::process::Command::new(env!("CARGO_BIN_EXE_uploader"))
        .args([
            "--bucket",
            "b",
            "--endpoint-url",
            "http://127.0.0.1:9",
            "--once",
        ])
        .env("AWS_REGION", "garage")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("SPOOL_DIR", &missing)
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains(missing.to_string_lossy().as_ref())
                .and(predicate::str::contains("mount the shared spool")),
        );
}

#[tokio::test(flavor = "multi_thread")]
async fn once_uploads_what_is_ready_quarantines_symlinks_and_leaves_junk_alone() {
    let Some(garage) = Garage::start("once_symlinks_junk") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, b"outside the spool").unwrap();
    let ready = spool.ready();
    std::os::unix::fs::symlink(&secret, ready.join("20261127T100000Z.pcap")).unwrap();
    for junk in [
        ".20261127T100001Z.pcap",
        "20261127T100002Z.pcap.tmp",
        "notes.txt",
    ] {
        std::fs::write(ready.join(junk), b"junk").unwrap();
    }
    spool.add("20261127T100003Z.pcap", 5000);
    spool.add("20261127T100004Z.pcap", 6000);
    let mut cmd = garage.uploader(UPLOADER, &spool);
    // A CA bundle that does not exist must not matter for plain HTTP either.
    cmd.env("AWS_CA_BUNDLE", "/nonexistent/ca.pem")
        .arg("--once");
    cmd.assert().success();
    assert_eq!(
        garage.capture_keys().await,
        [
            "tcp-dumps/test-node/2026/11/27/10/20261127T100003Z.pcap",
            "tcp-dumps/test-node/2026/11/27/10/20261127T100004Z.pcap"
        ]
    );
    assert_eq!(
        spool.ready_names(),
        [
            ".20261127T100001Z.pcap",
            "20261127T100002Z.pcap.tmp",
            "notes.txt"
        ]
    );
    // The link itself moved, unfollowed (issue 20).
    let quarantined = spool.root().join("quarantine/20261127T100000Z.pcap");
    assert_eq!(std::fs::read_link(&quarantined).unwrap(), secret);
    assert_eq!(std::fs::read(&secret).unwrap(), b"outside the spool");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_passes_against_a_working_bucket() {
    let Some(garage) = Garage::start("check_ok") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let out = garage
        .uploader(UPLOADER, &spool)
        .arg("--check")
        .assert()
        .success()
        .stdout(predicate::str::contains("accepts uploads"))
        .get_output()
        .stdout
        .clone();
    // It writes one empty object, to learn whether the store confirms the
    // checksums it is sent, and says so when it does not.
    assert_eq!(
        garage.keys().await,
        ["tcp-dumps/.s3-tcpdump-checksum-probe"],
        "--check wrote something else"
    );
    // garage returns the SHA-256 it was sent: no warning.
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("without confirming"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_the_last_file_then_exits_zero() {
    let Some(garage) = Garage::start("drain") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    // The capture side is still writing its last file when SIGTERM comes.
    let last = spool.root().join("active/20261127T120000Z.pcap");
    let bytes = pcap_bytes(4000, "last");
    std::fs::write(&last, &bytes).unwrap();
    let mut up = Running::spawn(garage.uploader(UPLOADER, &spool));
    wait_until(Duration::from_secs(10), "admin endpoint", || {
        up.http("/healthz").0 == 200
    });
    up.signal(nix::sys::signal::Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    std::fs::rename(&last, spool.ready().join("20261127T120000Z.pcap")).unwrap();
    let status = up.wait(Duration::from_secs(20));
    assert!(status.success(), "exit {status:?}; log:\n{}", up.stderr());
    let (body, _) = garage
        .get("tcp-dumps/test-node/2026/11/27/12/20261127T120000Z.pcap")
        .await
        .expect("last file uploaded during drain");
    assert_eq!(body, bytes);
}

/// A native sidecar starts before the capture container, on an empty
/// volume: the uploader makes the spool's folders and waits for captures.
#[tokio::test(flavor = "multi_thread")]
async fn starts_first_on_an_empty_spool_and_uploads_what_arrives_later() {
    let Some(garage) = Garage::start("empty-spool") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    for folder in ["active", "ready"] {
        std::fs::remove_dir(spool.root().join(folder)).unwrap();
    }
    let mut up = Running::spawn(garage.uploader(UPLOADER, &spool));
    wait_until(Duration::from_secs(10), "admin endpoint", || {
        up.http("/healthz").0 == 200
    });
    for folder in ["active", "ready", "state"] {
        let meta = std::fs::metadata(spool.root().join(folder)).unwrap();
        assert!(meta.is_dir(), "{folder} not created");
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            spool::FOLDER_MODE,
            "{folder}"
        );
    }
    let bytes = spool.add("20261127T130000Z.pcap", 3000);
    wait_until(Duration::from_secs(20), "the capture uploaded", || {
        spool.ready_names().is_empty()
    });
    let (body, _) = garage
        .get("tcp-dumps/test-node/2026/11/27/13/20261127T130000Z.pcap")
        .await
        .expect("uploaded");
    assert_eq!(body, bytes);
    up.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(up.wait(Duration::from_secs(20)).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_capture_is_uploaded_marked_with_the_offset_and_counted() {
    let Some(garage) = Garage::start("damaged_capture_is_uploaded_marked") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let (name, start) = name_started_ago(Duration::from_secs(120));
    let mut bytes = pcap_bytes(20_000, &name);
    // The third record's captured length, garbled as a torn write leaves it.
    let third = 24 + 2 * (16 + 1024);
    bytes[third + 8..third + 12].copy_from_slice(&524_288u32.to_le_bytes());
    let active = spool.root().join("active").join(&name);
    std::fs::write(&active, &bytes).unwrap();
    std::fs::rename(&active, spool.ready().join(&name)).unwrap();
    let up = Running::spawn(garage.uploader(UPLOADER, &spool));

    wait_until(Duration::from_secs(30), "ready/ to empty", || {
        spool.ready_names().is_empty()
    });
    let key = format!("tcp-dumps/test-node/{}/{name}", start.format("%Y/%m/%d/%H"));
    let (body, meta) = garage
        .get(&key)
        .await
        .expect("the damaged capture is uploaded");
    assert_eq!(body, bytes, "uploaded as it is: evidence is not altered");
    assert_eq!(meta["sha256"], sha256_hex(&bytes));
    assert_eq!(meta["packets"], "2");
    assert_eq!(
        meta["pcap"],
        format!(
            "damaged: impossible record at byte {third}: 524288 bytes captured of a 1024-byte packet"
        )
    );
    let (_, metrics) = up.http("/metrics");
    assert!(
        metrics.contains("s3_tcpdump_uploader_damaged_captures_total 1"),
        "{metrics}"
    );
    assert!(
        up.stderr().contains("capture is damaged"),
        "{}",
        up.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_capture_carries_its_drop_counts_in_its_metadata_and_their_record_goes_with_it() {
    let Some(garage) = Garage::start("a_capture_carries_its_drop_counts") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let layout = spool.layout();
    std::fs::create_dir(layout.counters()).unwrap();
    let (name, start) = name_started_ago(Duration::from_secs(120));
    spool.add(&name, 10_000);
    let counted = spool::counters::CaptureCounters {
        dropped_by_kernel: 12,
        dropped_by_interface: 3,
        from: 1_796_353_559_123,
        to: 1_796_353_619_456,
    };
    spool::counters::write(&layout.counters(), &name, &counted).unwrap();
    let _up = Running::spawn(garage.uploader(UPLOADER, &spool));

    wait_until(Duration::from_secs(30), "ready/ to empty", || {
        spool.ready_names().is_empty()
    });
    let key = format!("tcp-dumps/test-node/{}/{name}", start.format("%Y/%m/%d/%H"));
    let (_, meta) = garage.get(&key).await.expect("the capture is uploaded");
    assert_eq!(meta["kernel-drops"], "12");
    assert_eq!(meta["interface-drops"], "3");
    assert_eq!(meta["drops-counted-from"], "2026-12-04T03:05:59.123Z");
    assert_eq!(meta["drops-counted-to"], "2026-12-04T03:06:59.456Z");
    wait_until(Duration::from_secs(10), "the record removed", || {
        !layout.counters_record(&name).exists()
    });
}
