//! What the uploader tells S3 and what it tells anyone who reaches its port:
//! every request pins the bucket to its account, a wrong owner is named in
//! plain words, the admin port says failure kinds and never the store's
//! words, and a loopback-only admin port is probed from inside.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use assert_cmd::prelude::*;
use predicates::prelude::*;
use test_support::s3_proxy::{Answer, S3Proxy};
use test_support::*;

const UPLOADER: &str = env!("CARGO_BIN_EXE_uploader");

const MIB: usize = 1024 * 1024;
const OWNER: &str = "111122223333";
const HEADER: &str = "x-amz-expected-bucket-owner";

fn garage_addr(garage: &Garage) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], garage.port))
}

/// A multipart upload started by someone else's hand (the test's client),
/// recorded in `state/` as an interrupted uploader would have left it.
async fn interrupted_upload(garage: &Garage, spool: &Spool, name: &str, bytes: &[u8]) -> String {
    let key = format!("tcp-dumps/test-node/2026/11/27/19/{name}");
    let upload_id = garage
        .client()
        .await
        .create_multipart_upload()
        .bucket(garage.bucket())
        .key(&key)
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let state = spool.root().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join(format!("{name}.json")),
        serde_json::json!({
            "version": 1, "bucket": garage.bucket(), "key": key, "upload_id": upload_id,
            "size": bytes.len(), "part_size": 5 * MIB, "sha256": sha256_hex(bytes),
        })
        .to_string(),
    )
    .unwrap();
    key
}

#[tokio::test(flavor = "multi_thread")]
async fn every_s3_request_carries_the_expected_bucket_owner() {
    let Some(garage) = Garage::start("owner_header") else {
        return;
    };
    let proxy = S3Proxy::start(Answer::Forward {
        upstream: garage_addr(&garage),
        bucket_owner: Some(OWNER.to_owned()),
    });
    let spool = Spool::with_capture_folders();
    // One of each: a single PutObject, a multipart upload resumed from a
    // record (ListParts), and a new one (CreateMultipartUpload).
    let small = spool.add("20261127T190000Z.pcap", 2000);
    let resumed_name = "20261127T190001Z.pcap";
    let resumed = spool.add(resumed_name, 6 * MIB + 100);
    let resumed_key = interrupted_upload(&garage, &spool, resumed_name, &resumed).await;
    let fresh = spool.add("20261127T190002Z.pcap", 6 * MIB + 200);

    let mut cmd = garage.uploader(UPLOADER, &spool);
    cmd.env("S3_ENDPOINT_URL", proxy.endpoint())
        .env("S3_EXPECTED_BUCKET_OWNER", OWNER)
        .args(["--multipart-threshold-mb", "5", "--part-size-mb", "5"]);
    let up = Running::spawn(cmd);
    wait_until(Duration::from_secs(60), "every capture to go", || {
        spool.ready_names().is_empty()
    });
    wait_until(Duration::from_secs(10), "ready", || {
        up.http("/readyz").0 == 200
    });
    drop(up);

    let requests = proxy.requests();
    for request in &requests {
        assert_eq!(
            request.header(HEADER),
            Some(OWNER),
            "{} {} went without the expected owner",
            request.operation(),
            request.target
        );
    }
    let seen: BTreeSet<(&str, bool)> = requests
        .iter()
        .map(|r| (r.operation(), r.key().ends_with(".s3-tcpdump-probe")))
        .collect();
    for expected in [
        ("ListParts", true),
        ("PutObject", false),
        ("ListParts", false),
        ("CreateMultipartUpload", false),
        ("UploadPart", false),
        ("CompleteMultipartUpload", false),
    ] {
        assert!(seen.contains(&expected), "no {expected:?} in {seen:?}");
    }
    assert!(
        requests
            .iter()
            .any(|r| r.operation() == "ListParts" && r.key() == resumed_key),
        "the interrupted upload was not resumed through ListParts"
    );
    assert_eq!(
        garage
            .get("tcp-dumps/test-node/2026/11/27/19/20261127T190000Z.pcap")
            .await
            .unwrap()
            .0,
        small
    );
    assert!(garage.get(&resumed_key).await.unwrap().0 == resumed);
    assert!(
        garage
            .get("tcp-dumps/test-node/2026/11/27/19/20261127T190002Z.pcap")
            .await
            .unwrap()
            .0
            == fresh
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_with_a_wrong_bucket_owner_fails_naming_the_account() {
    let Some(garage) = Garage::start("owner_check") else {
        return;
    };
    // garage ignores the header; the proxy checks it as S3 does.
    let proxy = S3Proxy::start(Answer::Forward {
        upstream: garage_addr(&garage),
        bucket_owner: Some(OWNER.to_owned()),
    });
    let spool = Spool::with_capture_folders();
    let check = |owner: Option<&str>| {
        let mut cmd = garage.uploader(UPLOADER, &spool);
        cmd.arg("--check").env("S3_ENDPOINT_URL", proxy.endpoint());
        if let Some(owner) = owner {
            cmd.env("S3_EXPECTED_BUCKET_OWNER", owner);
        }
        cmd.assert()
    };
    check(Some("999999999999")).code(1).stderr(
        predicate::str::contains(
            "account 999999999999 (S3_EXPECTED_BUCKET_OWNER) does not own bucket",
        )
        .and(predicate::str::contains("AccessDenied")),
    );
    check(Some(OWNER))
        .success()
        .stdout(predicate::str::contains("accepts uploads"))
        .stderr(predicate::str::contains("not set").not());
    // Unset: allowed (a local store knows no accounts), with a warning.
    check(None).success().stderr(predicate::str::contains(
        "S3_EXPECTED_BUCKET_OWNER is not set",
    ));
    // Not an account id: refused before anything is sent.
    let before = proxy.requests().len();
    check(Some("my-account"))
        .code(2)
        .stderr(predicate::str::contains("12-digit"));
    assert_eq!(proxy.requests().len(), before);
}

/// S3's newer AccessDenied messages name the account and the role.
const ARN_MESSAGE: &str = "User: arn:aws:sts::111122223333:assumed-role/s3-tcpdump/i-0123456789abcdef0 is not authorized to perform: s3:ListMultipartUploadParts on resource: \"arn:aws:s3:::captures/tcp-dumps/.s3-tcpdump-probe\" because no identity-based policy allows the s3:ListMultipartUploadParts action";

#[tokio::test(flavor = "multi_thread")]
async fn readyz_after_access_denied_says_the_kind_and_never_the_arn() {
    let Some(garage) = Garage::start("readyz_arn") else {
        return;
    };
    let proxy = S3Proxy::start(Answer::DenyAll {
        message: ARN_MESSAGE.to_owned(),
    });
    let spool = Spool::with_capture_folders();
    spool.add("20261127T200000Z.pcap", 1000);
    let mut cmd = garage.uploader(UPLOADER, &spool);
    cmd.env("S3_ENDPOINT_URL", proxy.endpoint());
    let up = Running::spawn(cmd);
    wait_until(Duration::from_secs(10), "the upload to be denied", || {
        up.http("/metrics")
            .1
            .contains("failures_total{kind=\"access_denied\"}")
    });
    let (status, body) = up.http("/readyz");
    assert_eq!(status, 503);
    assert_eq!(
        body,
        "not ready: access_denied (details in the uploader's log)\n"
    );
    for route in ["/readyz", "/healthz", "/metrics"] {
        let (_, answer) = up.http(route);
        for secret in ["arn:", "111122223333", "assumed-role"] {
            assert!(
                !answer.contains(secret),
                "{route} says {secret:?}: {answer}"
            );
        }
    }
    // The details are where a person with access to the pod looks.
    assert!(
        up.stderr().contains("assumed-role/s3-tcpdump"),
        "{}",
        up.stderr()
    );
    assert_eq!(spool.ready_names(), ["20261127T200000Z.pcap"]);
}

fn probe(route: &str, metrics_addr: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uploader"))
        .args(["probe", route])
        .env("METRICS_ADDR", metrics_addr)
        .output()
        .unwrap()
}

/// The sockets listening on `port` (IPv4), as /proc/net/tcp shows them.
fn listening_addresses(port: u16) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (fields.get(1)?, fields.get(3)?);
            let (ip, p) = local.split_once(':')?;
            (*state == "0A" && u16::from_str_radix(p, 16).ok()? == port).then(|| ip.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn loopback_admin_port_is_probed_by_the_uploader_binary() {
    let Some(garage) = Garage::start("loopback_probes") else {
        return;
    };
    let port = free_port();
    let loopback = format!("127.0.0.1:{port}");
    let spool = Spool::with_capture_folders();
    let mut cmd = garage.uploader(UPLOADER, &spool);
    cmd.env("METRICS_ADDR", &loopback);
    let mut up = Running::spawn(cmd);
    wait_until(Duration::from_secs(10), "probe live", || {
        probe("live", &loopback).status.success()
    });
    // Bound to loopback only: nothing else on the node reaches it.
    assert_eq!(listening_addresses(port), ["0100007F"]);
    wait_until(Duration::from_secs(10), "probe ready", || {
        probe("ready", &loopback).status.success()
    });
    let ready = probe("ready", &loopback);
    assert_eq!(String::from_utf8_lossy(&ready.stdout), "ready\n");
    // The manifests' default address (0.0.0.0) is asked on loopback too.
    assert!(probe("live", &format!("0.0.0.0:{port}")).status.success());

    up.signal(nix::sys::signal::Signal::SIGTERM);
    up.wait(Duration::from_secs(30));
    let gone = probe("live", &loopback);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&gone.stdout).contains("did not answer"),
        "{gone:?}"
    );

    // Not ready: exit 1, the kind on stdout (what the kubelet records).
    // A new port: the one just released may already be another test's.
    let loopback = format!("127.0.0.1:{}", free_port());
    let proxy = S3Proxy::start(Answer::DenyAll {
        message: ARN_MESSAGE.to_owned(),
    });
    let mut cmd = garage.uploader(UPLOADER, &spool);
    cmd.env("METRICS_ADDR", &loopback)
        .env("S3_ENDPOINT_URL", proxy.endpoint());
    let _up = Running::spawn(cmd);
    wait_until(Duration::from_secs(10), "the probe to be denied", || {
        String::from_utf8_lossy(&probe("ready", &loopback).stdout).contains("access_denied")
    });
    let denied = probe("ready", &loopback);
    assert_eq!(denied.status.code(), Some(1));
    let said = String::from_utf8_lossy(&denied.stdout);
    assert!(said.contains("503") && !said.contains("arn:"), "{said}");
}
