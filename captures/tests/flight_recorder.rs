//! The flight recorder end to end against garage: Alertmanager's webhook
//! (its documented format, as a fixture) becomes a pin in the bucket, and an
//! uploader in pinned mode then ships the capture the pin covers, and only
//! that one; `captures pin` and `captures pins` write and list pins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use assert_cmd::prelude::*;
use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};
use test_support::*;

const FIXTURE: &str = include_str!("fixtures/alertmanager-webhook.json");
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// `captures ARGS…` with the garage's settings and a clean AWS environment.
fn captures(garage: &Garage, args: &[&str]) -> Command {
    let mut cmd = garage.s3_client(assert_cmd::cargo::cargo_bin("captures"));
    cmd.args(args);
    cmd
}

/// The uploader binary beside this crate's `captures`.
fn uploader_binary() -> PathBuf {
    let uploader = PathBuf::from(env!("CARGO_BIN_EXE_captures")).with_file_name("uploader");
    assert!(
        uploader.is_file(),
        "{} is missing: build it first (cargo build -p uploader)",
        uploader.display()
    );
    uploader
}

async fn pin_keys(garage: &Garage) -> Vec<String> {
    let mut keys = garage.keys().await;
    keys.retain(|k| k.starts_with("tcp-dumps/pins/"));
    keys
}

/// A capture in `ready/` named for `start`, last written at `end`.
fn add_capture(spool: &Spool, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let name = format!("{}.pcap", start.format("%Y%m%dT%H%M%SZ"));
    spool.add(&name, 50_000);
    last_written(spool, &name, end);
    name
}

/// Sets the last write of the capture `name` in `ready/` (where a pin's
/// window is matched against).
fn last_written(spool: &Spool, name: &str, end: DateTime<Utc>) {
    std::fs::File::options()
        .write(true)
        .open(spool.ready().join(name))
        .unwrap()
        .set_modified(end.into())
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alertmanager_webhook_becomes_a_pin_and_the_pinned_uploader_ships_its_capture() {
    let Some(garage) = Garage::start("alertmanager_pin") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut receiver = captures(&garage, &["receive-alerts"]);
    receiver
        .env("LISTEN_ADDR", addr.to_string())
        .env("TOKEN_FILE", &token_file)
        // Running reads METRICS_ADDR for its http helper.
        .env("METRICS_ADDR", addr.to_string());
    let receiver = Running::spawn(receiver);
    wait_until(Duration::from_secs(20), "the receiver to listen", || {
        receiver.http("/healthz").0 == 200
    });

    let post = |auth: &str| {
        http_post(
            addr,
            "/alerts",
            &["Content-Type: application/json", auth],
            FIXTURE.as_bytes(),
        )
    };
    let (status, _) = post("Authorization: Bearer wrong-token-wrong-token-wrong-tok");
    assert_eq!(status, 401, "a wrong token was let in");
    assert!(pin_keys(&garage).await.is_empty());
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let (status, body) = post(&bearer);
    assert_eq!(status, 200, "{body}\n{}", receiver.stderr());
    // Alertmanager repeats a firing alert: still one pin.
    let (status, _) = post(&bearer);
    assert_eq!(status, 200);
    let keys = pin_keys(&garage).await;
    assert_eq!(keys.len(), 1, "one pin for the one firing alert: {keys:?}");
    let (pin, _) = garage.get(&keys[0]).await.unwrap();
    let pin = bucket::pins::Pin::parse(&pin).unwrap();
    let starts_at: DateTime<Utc> = "2026-12-04T03:00:00Z".parse().unwrap();
    assert_eq!(pin.from, starts_at - TimeDelta::minutes(10));
    assert_eq!(pin.to, starts_at + TimeDelta::minutes(5));
    assert!(pin.selects("test-node") && !pin.selects("other-node"));
    assert!(
        pin.reason.contains("shop/cart-7d9f8b6c5-x2x4q"),
        "{}",
        pin.reason
    );

    // The uploader in pinned mode ships the capture the pin covers only.
    let spool = Spool::with_capture_folders();
    let covered = add_capture(
        &spool,
        starts_at - TimeDelta::seconds(60),
        starts_at - TimeDelta::seconds(1),
    );
    let before = add_capture(
        &spool,
        starts_at - TimeDelta::minutes(30),
        starts_at - TimeDelta::minutes(29),
    );
    let out = garage
        .uploader(uploader_binary().to_str().unwrap(), &spool)
        .env("UPLOAD_MODE", "pinned")
        .arg("--once")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shipped: Vec<String> = garage
        .capture_keys()
        .await
        .iter()
        .map(|k| k.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(shipped, [covered]);
    assert_eq!(spool.ready_names(), [before], "the ring keeps the rest");
}

#[tokio::test(flavor = "multi_thread")]
async fn captures_pin_writes_a_pin_that_captures_pins_lists_and_deletes() {
    let Some(garage) = Garage::start("captures_pin") else {
        return;
    };
    captures(
        &garage,
        &[
            "pin",
            "--from",
            "-10m",
            "--to",
            "+5m",
            "--node",
            "node-a",
            "--reason",
            "checkout errors",
        ],
    )
    .assert()
    .success();
    let keys = pin_keys(&garage).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let out = captures(&garage, &["pins"]).assert().success();
    let listed = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        listed.contains("checkout errors")
            && listed.contains("node-a")
            && listed.contains("in force"),
        "{listed}"
    );
    let id = listed.split_whitespace().next().unwrap().to_owned();
    captures(&garage, &["pins", "--delete", &id])
        .assert()
        .success();
    assert!(pin_keys(&garage).await.is_empty());

    let refused = captures(&garage, &["pin", "--from", "-10m", "--reason", "x"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(
        stderr.contains("--node") && stderr.contains("--all"),
        "{stderr}"
    );
}

/// One journal segment of `node` over `[from, to)` in the bucket, where
/// the journal container's uploader puts it.
async fn put_journal(
    garage: &Garage,
    node: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    pods: &[bucket::journal_record::JournalLine],
) {
    use test_support::journal_fixture::{header, segment_gz};
    let file = bucket::journal_keys::journal_file_name(from);
    let key = bucket::journal_keys::journal_key("tcp-dumps/", node, from, &file);
    garage
        .put(&key, segment_gz(&header(node, from, to), pods).unwrap())
        .await;
}

async fn pinned_selections(garage: &Garage) -> Vec<serde_json::Value> {
    let out = captures(garage, &["pins", "--json"]).assert().success();
    let pins: Vec<serde_json::Value> = serde_json::from_slice(&out.get_output().stdout).unwrap();
    pins.into_iter().map(|p| p["selection"].clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn captures_pin_by_pod_pins_the_nodes_where_the_pod_ran_in_the_window() {
    use test_support::journal_fixture::pod;
    let Some(garage) = Garage::start("captures_pin_pod") else {
        return;
    };
    // payments/api-5f7c ran on node-a until 20 minutes ago; its successor
    // (same prefix) runs on node-b since 19 minutes ago, and still does.
    let now = Utc::now().trunc_subsecs(0);
    let ago = |m: i64| now - TimeDelta::minutes(m);
    let mut first = pod(
        "payments",
        "api-5f7c-xk2p9",
        [10, 0, 3, 7].into(),
        "node-a",
        ago(60),
    );
    if let bucket::journal_record::JournalLine::Pod(p) = &mut first {
        p.valid_to = Some(ago(20));
    }
    put_journal(&garage, "node-a", ago(30), ago(15), &[first]).await;
    let second = pod(
        "payments",
        "api-5f7c-zz9q1",
        [10, 0, 4, 2].into(),
        "node-b",
        ago(19),
    );
    put_journal(&garage, "node-b", ago(19), ago(1), &[second]).await;
    let other = pod("shop", "cart-0", [10, 0, 5, 5].into(), "node-c", ago(60));
    put_journal(&garage, "node-c", ago(30), ago(1), &[other]).await;

    let pin = |from: &str, pod: &str| {
        captures(
            &garage,
            &[
                "pin",
                "--from",
                from,
                "--to",
                "+5m",
                "--pod",
                pod,
                "--reason",
                "api errors",
            ],
        )
    };
    let out = pin("-25m", "payments/api-5f7c").assert().success();
    let said = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(said.contains("node-a") && said.contains("node-b"), "{said}");
    assert_eq!(
        pinned_selections(&garage).await,
        vec![
            serde_json::json!({"kind": "nodes", "nodes": ["node-a", "node-b"], "pod": "payments/api-5f7c"})
        ]
    );
    let pinned_line = said.lines().find(|l| l.starts_with("pinned ")).unwrap();
    let id = pinned_line.split(['(', ')']).nth(1).unwrap().to_owned();
    captures(&garage, &["pins", "--delete", &id])
        .assert()
        .success();

    // Only after it left node-a: node-b alone (the running pod is held on
    // its node through the window still to come).
    pin("-10m", "payments/api-5f7c").assert().success();
    assert_eq!(
        pinned_selections(&garage).await,
        vec![serde_json::json!({"kind": "nodes", "nodes": ["node-b"], "pod": "payments/api-5f7c"})]
    );

    // A pod no journal knows: refused, naming it, and no pin written.
    let before = pin_keys(&garage).await.len();
    let refused = pin("-10m", "payments/nothing-here").assert().failure();
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(stderr.contains("payments/nothing-here"), "{stderr}");
    assert_eq!(pin_keys(&garage).await.len(), before);
}

/// A capture in `ready/` starting at `start`, last written at `end`,
/// holding one refused connection to 10.0.3.7:8080 at `at`.
fn add_refused(
    spool: &Spool,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    at: DateTime<Utc>,
) -> String {
    let name = format!("{}.pcap", start.format("%Y%m%dT%H%M%SZ"));
    let bytes = test_support::synthetic::refused_connections(&[test_support::synthetic::Refused {
        at: Duration::from_micros(u64::try_from(at.timestamp_micros()).unwrap()),
        client: ([10, 0, 9, 1], 40_000),
        server: ([10, 0, 3, 7], 8080),
    }])
    .unwrap();
    std::fs::write(spool.active().join(&name), bytes).unwrap();
    std::fs::rename(spool.active().join(&name), spool.ready().join(&name)).unwrap();
    last_written(spool, &name, end);
    name
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_index_shipped_find_sees_the_ring_and_fetch_names_the_captures_never_shipped() {
    let Some(garage) = Garage::start("pinned_with_index") else {
        return;
    };
    let base = (Utc::now() - TimeDelta::minutes(20)).trunc_subsecs(0);
    let at = |s: i64| base + TimeDelta::seconds(s);
    let spool = Spool::with_capture_folders();
    let kept = add_refused(&spool, at(0), at(50), at(10));
    let pinned = add_refused(&spool, at(60), at(110), at(70));
    captures(
        &garage,
        &[
            "pin",
            "--from",
            &rfc(at(55)),
            "--to",
            &rfc(at(120)),
            "--node",
            "test-node",
            "--reason",
            "second minute",
        ],
    )
    .assert()
    .success();
    let once = || {
        garage
            .uploader(uploader_binary().to_str().unwrap(), &spool)
            .env("UPLOAD_MODE", "pinned-with-index")
            .arg("--once")
            .output()
            .unwrap()
    };
    let out = once();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = |keys: Vec<String>| -> Vec<String> {
        keys.iter()
            .map(|k| k.rsplit('/').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(garage.capture_keys().await),
        std::slice::from_ref(&pinned)
    );
    let mut indexes = garage.keys().await;
    indexes.retain(|k| {
        k.starts_with(&bucket::index_keys::index_node_prefix(
            "tcp-dumps/",
            "test-node",
        ))
    });
    assert_eq!(indexes.len(), 2, "both captures' indexes: {indexes:?}");
    assert_eq!(
        spool.ready_names(),
        std::slice::from_ref(&kept),
        "the ring keeps the unpinned capture"
    );
    let cache = std::fs::read_to_string(spool.root().join("state/pins.json")).unwrap();
    assert!(
        cache.contains(&kept),
        "the local copy remembers the shipped index: {cache}"
    );

    let window = ["--from", &rfc(at(-60)), "--to", &rfc(at(180))];
    let find = captures(
        &garage,
        &[&["find"][..], &window[..], &["--host", "10.0.3.7"]].concat(),
    )
    .assert()
    .success();
    let found = String::from_utf8_lossy(&find.get_output().stdout).into_owned();
    assert!(
        found.contains(&kept) && found.contains(&pinned),
        "find over the ring's indexes too:\n{found}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let fetch = captures(
        &garage,
        &[
            &["fetch"][..],
            &window[..],
            &["--host", "10.0.3.7", "--out", out_dir],
        ]
        .concat(),
    )
    .assert()
    .success();
    let said = String::from_utf8_lossy(&fetch.get_output().stderr).into_owned();
    assert!(
        said.contains("never shipped") && said.contains(&kept),
        "{said}"
    );
    let fetched = String::from_utf8_lossy(&fetch.get_output().stdout).into_owned();
    assert!(
        fetched.contains(&pinned) && !fetched.contains(&kept),
        "{fetched}"
    );

    // A window of only the unshipped capture: refused, naming it.
    let refused = captures(
        &garage,
        &[
            "fetch",
            "--from",
            &rfc(at(-60)),
            "--to",
            &rfc(at(40)),
            "--host",
            "10.0.3.7",
            "--out",
            out_dir,
        ],
    )
    .assert()
    .failure();
    let said = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(
        said.contains("never shipped") && said.contains(&kept),
        "{said}"
    );

    // Without a flow index, the mode cannot work: refused at start.
    let out = garage
        .uploader(uploader_binary().to_str().unwrap(), &spool)
        .env("UPLOAD_MODE", "pinned-with-index")
        .env("FLOW_INDEX", "false")
        .arg("--once")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FLOW_INDEX=true"));
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
