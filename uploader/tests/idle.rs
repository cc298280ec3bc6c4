//! An idle uploader sleeps: its own reads of `ready/` never wake it, while a
//! capture moved in still does at once (issue 14).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use test_support::*;

const UPLOADER: &str = env!("CARGO_BIN_EXE_uploader");

fn scans(up: &Running) -> u64 {
    let (status, metrics) = up.http("/metrics");
    assert_eq!(status, 200);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("s3_tcpdump_uploader_scans_total "))
        .unwrap_or_else(|| panic!("no scans counter in\n{metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_spool_is_not_rescanned_until_the_interval_yet_an_arrival_wakes_at_once() {
    let Some(garage) = Garage::start("idle_spool_is_not_rescanned") else {
        return;
    };
    let spool = Spool::with_capture_folders();
    let mut cmd = garage.uploader(UPLOADER, &spool);
    // Far beyond the test's length: every scan it sees was woken by an event.
    cmd.env("UPLOADER_RESCAN_MS", "600000");
    let up = Running::spawn(cmd);
    wait_until(Duration::from_secs(20), "readiness", || {
        up.http("/readyz").0 == 200
    });

    let before = scans(&up);
    std::thread::sleep(Duration::from_secs(3));
    let quiet = scans(&up) - before;
    assert_eq!(
        quiet, 0,
        "an empty spool was scanned {quiet} times in 3 s with a 10-minute rescan interval: the scanner wakes itself"
    );

    let (name, _) = name_started_ago(Duration::from_secs(60));
    spool.add(&name, 10_000);
    wait_until(
        Duration::from_secs(30),
        "the capture moved into ready/ to be uploaded without waiting for a rescan",
        || spool.ready_names().is_empty(),
    );
    assert!(scans(&up) > before, "the arrival did not wake a scan");
    let captures: Vec<String> = garage
        .keys()
        .await
        .into_iter()
        .filter(|k| k.ends_with(".pcap"))
        .collect();
    assert_eq!(captures.len(), 1, "{captures:?}");
}
