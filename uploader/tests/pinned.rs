//! The flight recorder (`UPLOAD_MODE=pinned`) against garage: exactly the
//! captures that overlap a pin selecting this node are shipped (tagged),
//! the ring's oldest expire and are counted as expired, never as dropped,
//! and the pins survive a restart with the bucket unreachable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use bucket::pins::{PIN_SCHEMA, Pin, PinSelection, pin_id, pin_key};
use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};
use test_support::s3_proxy::{Answer, S3Proxy};
use test_support::*;

const UPLOADER: &str = env!("CARGO_BIN_EXE_uploader");

/// Seconds between capture starts (a compressed ROTATE_SECONDS).
const ROTATE: i64 = 2;
const CAPTURES: i64 = 20;
const SIZE: usize = 100_000;

fn capture_name(start: DateTime<Utc>) -> String {
    format!("{}.pcap", start.format("%Y%m%dT%H%M%SZ"))
}

/// Captures `0..CAPTURES`, `ROTATE` seconds apart from `base`, each
/// written until one second after its start; their bytes by name.
fn fill(spool: &Spool, base: DateTime<Utc>) -> BTreeMap<String, Vec<u8>> {
    let mut written = BTreeMap::new();
    for i in 0..CAPTURES {
        let start = base + TimeDelta::seconds(ROTATE * i);
        let name = capture_name(start);
        let bytes = spool.add(&name, SIZE);
        let last_write = std::time::SystemTime::from(start + TimeDelta::seconds(1));
        std::fs::File::options()
            .write(true)
            .open(spool.ready().join(&name))
            .unwrap()
            .set_modified(last_write)
            .unwrap();
        written.insert(name, bytes);
    }
    written
}

fn pin(from: DateTime<Utc>, to: DateTime<Utc>, nodes: &[&str], reason: &str) -> Pin {
    Pin {
        schema: PIN_SCHEMA,
        id: pin_id(from, reason),
        from,
        to,
        selection: PinSelection::Nodes {
            nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
            pod: None,
        },
        reason: reason.to_owned(),
        created_at: Utc::now(),
        created_by: "test".to_owned(),
        expires_at: Utc::now() + TimeDelta::hours(1),
    }
}

async fn put_pin(garage: &Garage, pin: &Pin) {
    garage
        .put(&pin_key("tcp-dumps/", &pin.id), pin.to_json())
        .await;
}

fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn only_captures_overlapping_a_pin_of_this_node_are_shipped_and_the_ring_expires_the_rest() {
    let Some(garage) = Garage::start("pinned_mode") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let base = (Utc::now() - TimeDelta::minutes(10)).trunc_subsecs(0);
    let at = |s: f64| base + TimeDelta::milliseconds((s * 1000.0) as i64);
    let written = fill(&spool, base);
    // Two pins of this node: captures 3, 4, 5 (one touches each end) and
    // 12, 13; one of another node over capture 8.
    put_pin(
        &garage,
        &pin(at(6.5), at(10.0), &["test-node"], "first window"),
    )
    .await;
    put_pin(
        &garage,
        &pin(at(24.5), at(27.0), &["test-node"], "second window"),
    )
    .await;
    put_pin(
        &garage,
        &pin(at(16.0), at(17.0), &["other-node"], "not here"),
    )
    .await;
    let expected: Vec<String> = [3, 4, 5, 12, 13]
        .iter()
        .map(|i| capture_name(base + TimeDelta::seconds(ROTATE * i)))
        .collect();

    // Through the recording proxy: garage keeps no tags (it answers
    // NotImplemented to GetObjectTagging), so the tags are read off the
    // requests.
    let proxy = S3Proxy::start(Answer::Forward {
        upstream: std::net::SocketAddr::from(([127, 0, 0, 1], garage.port)),
        bucket_owner: None,
    });
    let mut cmd = garage.uploader(UPLOADER, &spool);
    cmd.env("S3_ENDPOINT_URL", proxy.endpoint())
        .env("UPLOAD_MODE", "pinned")
        .env("PIN_POLL_SECONDS", "1")
        .env("MAX_SPOOL_MB", "1");
    let mut up = Running::spawn(cmd);

    let shipped_names = || async {
        let mut names: Vec<String> = garage
            .capture_keys()
            .await
            .iter()
            .map(|k| k.rsplit('/').next().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while shipped_names().await.len() < expected.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "pinned captures not shipped: {:?}\n{}",
            garage.keys().await,
            up.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A few more polls and scans: nothing else goes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(shipped_names().await, expected, "{}", up.stderr());
    for key in garage.capture_keys().await {
        let name = key.rsplit('/').next().unwrap();
        let (body, _) = garage.get(&key).await.unwrap();
        assert!(
            body == written[name],
            "{key}: bytes differ from the capture"
        );
    }
    let indexes = garage
        .keys()
        .await
        .into_iter()
        .filter(|k| k.contains("/index/"))
        .count();
    assert_eq!(
        indexes,
        expected.len(),
        "one flow index per shipped capture"
    );
    let puts: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.operation() == "PutObject" && !r.key().contains(".s3-tcpdump"))
        .collect();
    assert_eq!(puts.len(), 2 * expected.len(), "captures and their indexes");
    for put in &puts {
        let tagging = put.header("x-amz-tagging").unwrap_or_default();
        assert!(
            tagging.starts_with("pinned=true&pin-reason=")
                && (tagging.ends_with("first%20window") || tagging.ends_with("second%20window")),
            "{}: tagging {tagging:?}",
            put.key()
        );
    }
    let (_, metrics) = up.http("/metrics");
    assert_eq!(
        metric(&metrics, "s3_tcpdump_uploader_pinned_uploaded_files_total"),
        5
    );
    assert_eq!(metric(&metrics, "s3_tcpdump_uploader_pins_active"), 2);
    let expired = metric(&metrics, "s3_tcpdump_uploader_captures_expired_total");
    assert!(
        expired > 0,
        "the ring over 1 MiB let nothing expire:\n{metrics}"
    );
    assert_eq!(
        metric(&metrics, "s3_tcpdump_uploader_dropped_files_total"),
        0,
        "an expired capture was counted as dropped"
    );
    let log = up.stderr();
    // The fault ledger's own reading of the uploader's log: no loss.
    let losses = test_support::ledger::summary::budget_drops(
        &log,
        spool::logging::counted::UPLOADER_BUDGET_DROPPED,
        "uploader",
    );
    assert!(
        losses.is_empty(),
        "the fault ledger counts a loss: {losses:?}\n{log}"
    );
    assert_eq!(
        log.matches(uploader::pins::EXPIRED_LOG).count() as u64,
        expired
    );
    // The drain waits for pinned captures only: the ring stays.
    up.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        up.wait(Duration::from_secs(15)).success(),
        "{}",
        up.stderr()
    );
    let left = spool.ready_names().len() as i64;
    assert_eq!(
        left,
        CAPTURES - 5 - expired as i64,
        "the ring's unexpired captures stay on the node"
    );

    // Pins survive a restart with the bucket unreachable: the local copy.
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cmd = uploader_with_unreachable_store(UPLOADER, &spool, metrics_addr);
    cmd.env("UPLOAD_MODE", "pinned")
        .env("PIN_POLL_SECONDS", "1")
        .env("UPLOADER_READ_TIMEOUT_MS", "500");
    let again = Running::spawn(cmd);
    wait_until(
        Duration::from_secs(30),
        "the restarted uploader's metrics",
        || {
            let (status, m) = again.http("/metrics");
            status == 200 && m.contains("s3_tcpdump_uploader_pin_poll_failures_total 1")
        },
    );
    let (_, metrics) = again.http("/metrics");
    assert_eq!(
        metric(&metrics, "s3_tcpdump_uploader_pins_active"),
        2,
        "{}",
        again.stderr()
    );
}

/// The fault ledger's accounting reads a pinned-mode log: the ring's
/// expiries (logged in JSON, as in a pod) are not losses; a budget drop of
/// a pinned capture still is.
#[test]
fn the_fault_ledger_counts_ring_expiry_as_no_loss_and_a_pinned_drop_as_one() {
    let expired = serde_json::json!({"message": uploader::pins::EXPIRED_LOG, "file": "20261204T030000Z.pcap", "bytes": 1000});
    let dropped = serde_json::json!({"message": uploader::budget::DROPPED_LOG, "file": "20261204T030002Z.pcap", "bytes": 2000});
    let read = |log: &str| {
        test_support::ledger::summary::budget_drops(
            log,
            spool::logging::counted::UPLOADER_BUDGET_DROPPED,
            "uploader",
        )
    };
    assert!(read(&format!("{expired}\n{expired}")).is_empty());
    let losses = read(&format!("{expired}\n{dropped}"));
    assert_eq!(losses.len(), 1);
    assert_eq!(losses[0].file, "20261204T030002Z.pcap");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_in_pinned_mode_lists_the_pins() {
    let Some(garage) = Garage::start("pinned_check") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let now = Utc::now().trunc_subsecs(0);
    put_pin(&garage, &pin(now, now, &["test-node"], "checked")).await;
    let out = garage
        .uploader(UPLOADER, &spool)
        .env("UPLOAD_MODE", "pinned")
        .arg("--check")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("pinned mode: the pins under \"tcp-dumps/pins/\" are readable (1 listed)"),
        "{stdout}"
    );
}
