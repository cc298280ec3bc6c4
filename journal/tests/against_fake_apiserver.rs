//! The journal against a fake API server that speaks the real wire format
//! (test-support's `fake_apiserver`): lists, watch streams, bookmarks,
//! `410 Gone`, dropped watches, an API server that goes away. Each test
//! runs the journal's real loop with a one-second period and reads the
//! segments it wrote into the spool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use bucket::journal_record::{JournalLine, PodInterval, SegmentHeader};
use journal::config::{Cli, Config};
use journal::watch::Reconnect;
use test_support::fake_apiserver::{FakeApiServer, Kind, pod, service};
use tokio::sync::oneshot;

const NODE: &str = "ip-10-0-1-7";

struct Running {
    spool: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(api: &FakeApiServer, max_records: usize) -> Self {
        let spool = tempfile::tempdir().unwrap();
        let cli = <Cli as clap::Parser>::parse_from([
            "journal",
            "--node",
            NODE,
            "--rotate-seconds",
            "1",
            "--labels",
            "app",
            "--max-records",
            &max_records.to_string(),
            "--spool-dir",
            spool.path().to_str().unwrap(),
        ]);
        let mut config = Config::from_cli(cli).unwrap();
        config.reconnect = Reconnect {
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(400),
        };
        let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            journal::run(config, Ok(client), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            spool,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the journal (which writes its last segment); returns every
    /// segment and the spool, kept until the caller drops it.
    async fn stop(mut self) -> (Vec<Vec<JournalLine>>, tempfile::TempDir) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the journal did not stop")
            .unwrap();
        (segments(self.spool.path()), self.spool)
    }

    fn segments(&self) -> Vec<Vec<JournalLine>> {
        segments(self.spool.path())
    }

    /// Waits until a segment that ends after now satisfies `check`.
    async fn wait_for_segment(
        &self,
        what: &str,
        check: impl Fn(&SegmentHeader, &[&PodInterval]) -> bool,
    ) {
        let asked = chrono::Utc::now();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.segments().iter().any(|lines| {
                let header = header(lines);
                header.to > asked && check(header, &pods(lines))
            });
            if found {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no segment showed {what}: {:#?}",
                self.segments().last()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Every segment in the spool, oldest first.
fn segments(spool: &Path) -> Vec<Vec<JournalLine>> {
    let dir = spool.join(spool::JOURNAL_DIR);
    // Not there until the journal has prepared the spool.
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| bucket::journal_keys::parse_journal_file_name(n).is_some())
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| journal::segment::read(&dir.join(n)).unwrap())
        .collect()
}

fn header(lines: &[JournalLine]) -> &SegmentHeader {
    match &lines[0] {
        JournalLine::Segment(h) => h,
        other => panic!("a segment must start with its header, not {other:?}"),
    }
}

fn pods(lines: &[JournalLine]) -> Vec<&PodInterval> {
    lines
        .iter()
        .filter_map(|l| match l {
            JournalLine::Pod(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn open_names(pods: &[&PodInterval]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter(|p| p.valid_to.is_none())
        .map(|p| p.name.clone())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_reused_by_another_pod_after_a_deletion_gives_two_intervals_that_do_not_overlap()
{
    let api = FakeApiServer::start().await;
    api.apply(
        Kind::Pod,
        pod(
            "payments",
            "api-7d4b9c-xk2p9",
            "uid-a",
            NODE,
            &["10.0.3.7", "fd00::3:7"],
            "api",
        ),
    );
    api.apply(
        Kind::Pod,
        pod(
            "other",
            "elsewhere-1",
            "uid-x",
            "ip-10-0-9-9",
            &["10.0.9.1"],
            "elsewhere",
        ),
    );
    api.apply(
        Kind::Service,
        service("kube-system", "kube-dns", "uid-s", &["172.20.0.10"]),
    );
    let journal = Running::start(&api, 10_000).await;
    journal
        .wait_for_segment("the first pod", |h, p| {
            !h.stale && open_names(p) == ["api-7d4b9c-xk2p9"; 2]
        })
        .await;
    api.delete(Kind::Pod, "uid-a");
    // The CNI's cooldown, shortened (table.rs's unit test takes 30 s on
    // a simulated clock).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    api.apply(
        Kind::Pod,
        pod(
            "web",
            "web-7d4b9c-q8r2m",
            "uid-b",
            NODE,
            &["10.0.3.7"],
            "web",
        ),
    );
    journal
        .wait_for_segment("the second pod", |_, p| {
            open_names(p) == ["web-7d4b9c-q8r2m"]
        })
        .await;
    let (all, _spool) = journal.stop().await;
    let holders: Vec<PodInterval> = all
        .iter()
        .flat_map(|lines| pods(lines).into_iter().cloned())
        .filter(|p| p.ip == "10.0.3.7")
        .collect();
    let first = holders
        .iter()
        .find(|p| p.uid == "uid-a" && p.valid_to.is_some())
        .expect("the first pod's interval ends");
    let second = holders
        .iter()
        .find(|p| p.uid == "uid-b")
        .expect("the second pod's interval");
    assert!(
        first.valid_to.unwrap() <= second.valid_from,
        "{first:?} overlaps {second:?}"
    );
    assert!(second.valid_from - first.valid_to.unwrap() >= chrono::TimeDelta::milliseconds(1000));
    assert_eq!(
        first.workload.as_ref().map(|w| w.name.as_str()),
        Some("api")
    );
    assert_eq!(first.labels.get("app").map(String::as_str), Some("api"));
    assert!(
        holders.iter().all(|p| p.node == NODE),
        "only this node's pods"
    );
    let services: Vec<_> = all
        .iter()
        .flatten()
        .filter(|l| matches!(l, JournalLine::Service(s) if s.name == "kube-dns" && s.ip == "172.20.0.10"))
        .collect();
    assert!(!services.is_empty(), "the cluster's Services are recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_of_a_pod_spec_and_no_label_outside_the_allow_list_reaches_the_journal() {
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
    let journal = Running::start(&api, 10_000).await;
    journal
        .wait_for_segment("the pod", |_, p| p.len() == 1)
        .await;
    let (_, spool) = journal.stop().await;
    let dir = spool.path().join(spool::JOURNAL_DIR);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap()),
            &mut text,
        )
        .unwrap();
        for secret in ["hunter2", "DB_PASSWORD", "secret-label", "registry.example"] {
            assert!(
                !text.contains(secret),
                "{secret} in {}: {text}",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_api_server_down_segments_say_stale_keep_the_last_state_and_recover_after_a_relist()
 {
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
    api.apply(
        Kind::Pod,
        pod(
            "payments",
            "db-7d4b9c-aaaaa",
            "uid-b",
            NODE,
            &["10.0.3.8"],
            "db",
        ),
    );
    let journal = Running::start(&api, 10_000).await;
    journal
        .wait_for_segment("both pods, current", |h, p| !h.stale && p.len() == 2)
        .await;
    api.set_down(true);
    journal
        .wait_for_segment("stale, with the last state kept", |h, p| {
            h.stale
                && h.stale_since.is_some()
                && h.stale_reason.is_some()
                && open_names(p).len() == 2
        })
        .await;
    // A pod deleted while the journal cannot see it.
    api.delete(Kind::Pod, "uid-a");
    tokio::time::sleep(Duration::from_secs(2)).await;
    api.set_down(false);
    journal
        .wait_for_segment("current again, the deleted pod ended", |h, p| {
            !h.stale && open_names(p) == ["db-7d4b9c-aaaaa"]
        })
        .await;
    let (all, _spool) = journal.stop().await;
    let ended = all
        .iter()
        .flat_map(|lines| pods(lines).into_iter().cloned())
        .find(|p| p.uid == "uid-a" && p.valid_to.is_some())
        .expect("the pod deleted during the outage ends at the relist");
    let recovered = all
        .iter()
        .find(|lines| {
            pods(lines)
                .iter()
                .any(|p| p.uid == "uid-a" && p.valid_to.is_some())
        })
        .unwrap();
    assert!(
        header(recovered).stale,
        "the segment where it ended says the time is uncertain: {ended:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_410_gone_or_a_dropped_watch_the_journal_lists_again_and_misses_no_change() {
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
    let journal = Running::start(&api, 10_000).await;
    journal
        .wait_for_segment("the first pod", |h, p| !h.stale && p.len() == 1)
        .await;
    api.bookmark();
    let lists_before = api.requests();
    api.expire();
    api.apply(
        Kind::Pod,
        pod(
            "payments",
            "b-7d4b9c-bbbbb",
            "uid-b",
            NODE,
            &["10.0.3.9"],
            "b",
        ),
    );
    journal
        .wait_for_segment("the pod added after 410 Gone", |h, p| {
            !h.stale && open_names(p).len() == 2
        })
        .await;
    assert!(api.requests() > lists_before, "a relist after 410 Gone");
    api.drop_watches();
    api.delete(Kind::Pod, "uid-b");
    journal
        .wait_for_segment("the deletion after a dropped watch", |h, p| {
            !h.stale && open_names(p) == ["api-7d4b9c-xk2p9"]
        })
        .await;
    drop(journal.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_pod_changes_on_one_node_stay_within_the_record_cap_and_end_in_the_right_state()
 {
    let api = FakeApiServer::start().await;
    let cap = 500;
    let journal = Running::start(&api, cap).await;
    journal
        .wait_for_segment("the first listing", |h, _| !h.stale)
        .await;
    // 5,000 changes: 2,000 pods created then deleted (4,000), 500 created
    // and relabelled in place (1,000): 500 live at the end.
    for i in 0..2_000u32 {
        let uid = format!("churn-{i}");
        let ip = format!("10.1.{}.{}", i / 250, i % 250);
        api.apply(
            Kind::Pod,
            pod("batch", &format!("job-{i}"), &uid, NODE, &[&ip], "job"),
        );
        api.delete(Kind::Pod, &uid);
    }
    for i in 0..500u32 {
        let uid = format!("live-{i}");
        let ip = format!("10.2.{}.{}", i / 250, i % 250);
        let mut live = pod("web", &format!("web-{i}"), &uid, NODE, &[&ip], "web");
        api.apply(Kind::Pod, live.clone());
        live["metadata"]["labels"]["app"] = "web-v2".into();
        api.apply(Kind::Pod, live);
    }
    journal
        .wait_for_segment("500 live pods relabelled", |h, p| {
            !h.stale
                && open_names(p).len() == 500
                && p.iter()
                    .filter(|p| p.valid_to.is_none())
                    .all(|p| p.labels["app"] == "web-v2")
        })
        .await;
    let (all, _spool) = journal.stop().await;
    let mut ended_total = 0;
    for lines in &all {
        let ended = pods(lines).iter().filter(|p| p.valid_to.is_some()).count();
        assert!(
            ended <= cap,
            "a segment held {ended} ended intervals, over the cap of {cap}"
        );
        ended_total += ended;
    }
    assert_eq!(
        ended_total, 2_000,
        "every churned pod's interval is written once, none dropped"
    );
}

/// The binary, pointed at the server through `KUBECONFIG` with a plain
/// `http://127.0.0.1:<port>` server, as for `kubectl proxy`; SIGTERM
/// writes the last segment and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reads_kubeconfig_with_a_plain_http_server_and_stops_cleanly_on_sigterm() {
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
    let spool = tempfile::tempdir().unwrap();
    let kubeconfig = spool.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_journal"))
        .env_clear()
        .env("KUBECONFIG", &kubeconfig)
        .env("NODE_NAME", NODE)
        .env("SPOOL_DIR", spool.path())
        .env("ROTATE_SECONDS", "1")
        .env("LOG_FORMAT", "text")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let current = segments(spool.path())
            .iter()
            .any(|lines| !header(lines).stale && open_names(&pods(lines)) == ["api-7d4b9c-xk2p9"]);
        if current {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no current segment naming the pod"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let probe = std::process::Command::new(env!("CARGO_BIN_EXE_journal"))
        .args([
            "--probe",
            "--node",
            NODE,
            "--spool-dir",
            spool.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(probe.status.success(), "{probe:?}");
    test_support::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        api.requests() >= 4,
        "a list and a watch of pods and of services"
    );
}

/// No token and no kubeconfig (the podman pod test, a misconfigured pod):
/// the journal still writes segments, each stale and saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_client_configuration_segments_say_stale_and_why() {
    let spool = tempfile::tempdir().unwrap();
    let cli = <Cli as clap::Parser>::parse_from([
        "journal",
        "--node",
        NODE,
        "--rotate-seconds",
        "1",
        "--spool-dir",
        spool.path().to_str().unwrap(),
    ]);
    let config = Config::from_cli(cli).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(journal::run(
        config,
        Err("no token mounted".to_owned()),
        async {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    let all = segments(spool.path());
    assert!(all.len() >= 2, "{all:?}");
    for lines in &all {
        let h = header(lines);
        assert!(
            h.stale && h.stale_reason.as_deref() == Some("no token mounted"),
            "{h:?}"
        );
    }
}
