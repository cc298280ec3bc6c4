//! Issue 22 end to end: the real `journal` binary watches the fake
//! Kubernetes API server while a pod is deleted and its address goes to
//! another pod (3 s later here: the 30 s of the scenario are in
//! `bucket.rs`, with segments written by the journal's own writer); the
//! real uploader ships a capture that spans both, its flow index and the
//! journal segments to garage; `captures` then selects and names by pod.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};
use spool::CaptureName;
use test_support::fake_apiserver::{FakeApiServer, Kind, pod};
use test_support::synthetic::{Refused, refused_connections};
use test_support::{Garage, Spool};

/// The node name `Garage::uploader` gives the uploader.
const NODE: &str = "test-node";

/// A binary of the workspace beside this crate's `captures`.
fn sibling_binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_captures")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: this test runs the real {name}; build it first (cargo build -p {name})",
        path.display()
    );
    path
}

fn captures(garage: &Garage, args: &[&str]) -> Command {
    let mut cmd = garage.s3_client(assert_cmd::cargo::cargo_bin("captures"));
    cmd.args(args);
    Command::from_std(cmd)
}

fn since_epoch(t: DateTime<Utc>) -> Duration {
    Duration::new(
        u64::try_from(t.timestamp()).unwrap(),
        t.timestamp_subsec_nanos(),
    )
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_selects_and_names_by_pod_through_the_journal_the_real_binaries_shipped() {
    let test = "captures_selects_and_names_by_pod_through_the_journal_the_real_binaries_shipped";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let (uploader, journal) = (sibling_binary("uploader"), sibling_binary("journal"));
    let api = FakeApiServer::start().await;
    let client = (
        "payments",
        "client-7d4b9c-q8x2v",
        "uid-client",
        "10.0.9.1",
        "client",
    );
    let first = ("payments", "api-7d4b9c-xk2p9", "uid-api", "10.0.3.7", "api");
    let second = ("payments", "web-7d4b9c-r4t6z", "uid-web", "10.0.3.7", "web");
    for (ns, name, uid, ip, app) in [client, first] {
        api.apply(Kind::Pod, pod(ns, name, uid, NODE, &[ip], app));
    }
    let spool = Spool::with_capture_folders();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let mut running = StdCommand::new(&journal)
        .env("KUBECONFIG", &kubeconfig)
        .env("NODE_NAME", NODE)
        .env("SPOOL_DIR", spool.root())
        .env("ROTATE_SECONDS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let start = Utc::now().trunc_subsecs(0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let while_first = Utc::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    api.delete(Kind::Pod, first.2);
    // The address goes to another pod 3 s later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ns, name, uid, ip, app) = second;
    api.apply(Kind::Pod, pod(ns, name, uid, NODE, &[ip], app));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let while_second = Utc::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    test_support::signal(&running, nix::sys::signal::Signal::SIGTERM);
    assert!(
        running.wait().unwrap().success(),
        "the journal stopped cleanly"
    );

    // One capture spanning both: the client refused by each pod in turn.
    let attempts = [(while_first, 40000), (while_second, 40001)].map(|(at, port)| Refused {
        at: since_epoch(at),
        client: ([10, 0, 9, 1], port),
        server: ([10, 0, 3, 7], 8080),
    });
    let name = CaptureName::new(start, 0).ready_file_name();
    std::fs::write(
        spool.ready().join(&name),
        refused_connections(&attempts).unwrap(),
    )
    .unwrap();
    let shipped = garage
        .uploader(uploader.to_str().unwrap(), &spool)
        .arg("--once")
        .output()
        .unwrap();
    assert!(
        shipped.status.success(),
        "{}",
        String::from_utf8_lossy(&shipped.stderr)
    );

    let (from, to) = (
        rfc(start - TimeDelta::seconds(60)),
        rfc(Utc::now() + TimeDelta::seconds(5)),
    );
    let window = ["--from", from.as_str(), "--to", to.as_str()];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.splice(1..1, window);
        let out = captures(&garage, &all).assert().success();
        let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        eprintln!("$ captures {}\n{text}", all.join(" "));
        text
    };

    let found = run(&["find", "--pod", "payments/api-7d4b9c"]);
    let lines: Vec<&str> = found.lines().collect();
    assert_eq!(lines.len(), 1, "only the first pod's flow: {found}");
    assert!(
        lines[0].contains(
            "tcp 10.0.9.1:40000 (payments/client-7d4b9c-q8x2v) -> 10.0.3.7:8080 (payments/api-7d4b9c-xk2p9)"
        ),
        "{found}"
    );

    let explained = run(&["explain", "--host", "10.0.3.7"]);
    assert!(
        explained.contains(
            "10.0.9.1:40000 (payments/client-7d4b9c-q8x2v) -> 10.0.3.7:8080 (payments/api-7d4b9c-xk2p9)  refused"
        ),
        "{explained}"
    );
    assert!(
        explained.contains(
            "10.0.9.1:40001 (payments/client-7d4b9c-q8x2v) -> 10.0.3.7:8080 (payments/web-7d4b9c-r4t6z)  refused"
        ),
        "{explained}"
    );
    let listed = run(&["list", "--pod", "payments/web"]);
    assert!(
        listed.contains("pod payments/web* ran on test-node from"),
        "{listed}"
    );
}
