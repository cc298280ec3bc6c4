//! The identity journal end to end: the journal's real loop against the
//! fake API server writes segments into the spool, and the real uploader
//! ships them to garage under `journal/`, checked by SHA-256, deleting them
//! only then — also while the API server is down, beside the captures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aws_sdk_s3::types::ChecksumMode;
use bucket::journal_keys::{journal_key, parse_journal_file_name};
use bucket::journal_record::JournalLine;
use test_support::fake_apiserver::{FakeApiServer, Kind, pod};
use test_support::*;

const UPLOADER: &str = env!("CARGO_BIN_EXE_uploader");
/// The node name `Garage::uploader` gives the uploader.
const NODE: &str = "test-node";

/// Runs the journal for about `seconds` (one-second periods) into `spool`.
async fn journal_for(api: Option<&FakeApiServer>, spool: &Spool, seconds: u64) {
    let cli = <journal::config::Cli as clap::Parser>::parse_from([
        "journal",
        "--node",
        NODE,
        "--rotate-seconds",
        "1",
        "--spool-dir",
        spool.root().to_str().unwrap(),
    ]);
    let config = journal::config::Config::from_cli(cli).unwrap();
    let client = match api {
        Some(api) => {
            Ok(kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap())
        }
        None => Err("no token mounted".to_owned()),
    };
    journal::run(
        config,
        client,
        tokio::time::sleep(Duration::from_secs(seconds)),
    )
    .await
    .unwrap();
}

/// The segments in the spool, by name, with their bytes.
fn local_segments(spool: &Spool) -> Vec<(String, Vec<u8>)> {
    let dir = spool.root().join(spool::JOURNAL_DIR);
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| parse_journal_file_name(p.file_name().unwrap().to_str().unwrap()).is_some())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    found.sort();
    found
}

fn lines(gz: &[u8]) -> Vec<JournalLine> {
    use std::io::BufRead as _;
    std::io::BufReader::new(flate2::read::GzDecoder::new(gz))
        .lines()
        .map(|l| JournalLine::parse(l.unwrap().as_bytes()).unwrap())
        .collect()
}

/// Every segment is in the bucket under its key, with the SHA-256 S3
/// checked and the same in its metadata, and is gone from the node.
async fn assert_shipped(garage: &Garage, segments: &[(String, Vec<u8>)]) -> Vec<Vec<JournalLine>> {
    let client = garage.client().await;
    let mut shipped = Vec::new();
    for (name, bytes) in segments {
        let start = parse_journal_file_name(name).unwrap();
        let key = journal_key("tcp-dumps/", NODE, start, name);
        assert!(
            key.starts_with("tcp-dumps/journal/node=test-node/date="),
            "{key}"
        );
        let head = client
            .head_object()
            .bucket(garage.bucket())
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap_or_else(|e| panic!("no journal object at {key}: {e:?}"));
        let sha256 = sha256_hex(bytes);
        assert_eq!(head.metadata().unwrap()["sha256"], sha256);
        assert_eq!(head.metadata().unwrap()["node"], NODE);
        let sha256_b64 = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(hex_to_bytes(&sha256))
        };
        assert_eq!(
            head.checksum_sha256(),
            Some(sha256_b64.as_str()),
            "S3 confirmed the SHA-256 of {key}"
        );
        let (body, _) = garage.get(&key).await.unwrap();
        assert_eq!(&body, bytes);
        shipped.push(lines(&body));
    }
    shipped
}

fn hex_to_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_segments_land_under_the_journal_prefix_with_a_checked_sha256_and_leave_the_node() {
    let Some(garage) = Garage::start("journal_segments_land_under_the_journal_prefix") else {
        return;
    };
    let api = FakeApiServer::start().await;
    api.apply(
        Kind::Pod,
        pod(
            "payments",
            "api-7d4b9c-xk2p9",
            "uid-a",
            NODE,
            &["10.0.3.7"],
            "api",
        ),
    );
    let spool = Spool::with_capture_folders();
    journal_for(Some(&api), &spool, 3).await;
    let segments = local_segments(&spool);
    assert!(segments.len() >= 2, "{segments:?}");
    let up = Running::spawn(garage.uploader(UPLOADER, &spool));
    wait_until(Duration::from_secs(30), "journal/ to empty", || {
        local_segments(&spool).is_empty()
    });
    let shipped = assert_shipped(&garage, &segments).await;
    let named = shipped.iter().flatten().any(|line| {
        matches!(line, JournalLine::Pod(p) if p.name == "api-7d4b9c-xk2p9" && p.ip == "10.0.3.7")
    });
    assert!(named, "the pod is in the shipped journal");
    drop(up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_api_server_down_captures_and_stale_journal_segments_still_upload() {
    let Some(garage) = Garage::start("with_the_api_server_down_captures_still_upload") else {
        return;
    };
    let api = FakeApiServer::start().await;
    api.set_down(true);
    let spool = Spool::with_capture_folders();
    let (name, start) = name_started_ago(Duration::from_secs(120));
    let bytes = spool.add(&name, 100_000);
    let up = Running::spawn(garage.uploader(UPLOADER, &spool));
    journal_for(Some(&api), &spool, 2).await;
    wait_until(Duration::from_secs(30), "ready/ to empty", || {
        spool.ready_names().is_empty()
    });
    let key = format!("tcp-dumps/test-node/{}/{name}", start.format("%Y/%m/%d/%H"));
    let (body, _) = garage
        .get(&key)
        .await
        .expect("the capture is uploaded while the API server is down");
    assert_eq!(body, bytes);
    let prefix = "tcp-dumps/journal/node=test-node/";
    wait_until(Duration::from_secs(30), "journal/ to empty", || {
        local_segments(&spool).is_empty()
    });
    let journal_keys: Vec<String> = garage
        .keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with(prefix))
        .collect();
    assert!(!journal_keys.is_empty(), "{:?}", garage.keys().await);
    for key in journal_keys {
        let (body, _) = garage.get(&key).await.unwrap();
        match &lines(&body)[0] {
            JournalLine::Segment(h) => assert!(h.stale && h.stale_reason.is_some(), "{h:?}"),
            other => panic!("{other:?}"),
        }
    }
    drop(up);
}

/// With the store away, `--once` fails naming every journal segment left,
/// and each stays on the node; once the store is back they are shipped,
/// checked, and only then deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_segments_stay_on_the_node_until_the_store_has_them() {
    use assert_cmd::prelude::*;
    use predicates::prelude::*;
    let Some(mut garage) = Garage::start("journal_segments_stay_on_the_node") else {
        return;
    };
    garage.stop();
    let spool = Spool::with_capture_folders();
    let dir = spool.root().join(spool::JOURNAL_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    let start = chrono::Utc::now() - chrono::TimeDelta::minutes(5);
    for i in 0..3 {
        let name = bucket::journal_keys::journal_file_name(start + chrono::TimeDelta::minutes(i));
        std::fs::write(dir.join(name), format!("segment {i}")).unwrap();
    }
    let segments = local_segments(&spool);
    assert_eq!(segments.len(), 3);
    let mut failed = garage.uploader(UPLOADER, &spool);
    failed.arg("--once").assert().code(1).stderr(
        predicate::str::contains(format!("journal/{}", segments[0].0)).and(
            predicate::str::contains(format!("journal/{}", segments[2].0)),
        ),
    );
    assert_eq!(
        local_segments(&spool),
        segments,
        "kept on the node while the store is away"
    );
    garage.restart();
    garage
        .uploader(UPLOADER, &spool)
        .arg("--once")
        .assert()
        .success();
    assert!(local_segments(&spool).is_empty());
    let client = garage.client().await;
    for (name, bytes) in &segments {
        let key = journal_key(
            "tcp-dumps/",
            NODE,
            parse_journal_file_name(name).unwrap(),
            name,
        );
        let head = client
            .head_object()
            .bucket(garage.bucket())
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.metadata().unwrap()["sha256"],
            sha256_hex(bytes),
            "{key}"
        );
    }
}
