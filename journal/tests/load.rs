//! The journal's load on the API server and its bytes per segment, for
//! `bench/journal` (ignored in the ordinary test run: it takes a minute).
//! A node of `BENCH_PODS` pods in a cluster of `BENCH_SERVICES` Services,
//! one pod replaced every `BENCH_CHURN_MS`, for `BENCH_SECONDS`, with
//! `BENCH_PERIOD` s segments. Prints one line of `key=value` figures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use journal::config::{Cli, Config};
use test_support::fake_apiserver::{FakeApiServer, Kind, pod, service};

const NODE: &str = "ip-10-0-1-7";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/journal runs it"]
async fn journal_load_and_segment_size() {
    let (pods, services) = (setting("BENCH_PODS", 110), setting("BENCH_SERVICES", 500));
    let (churn_ms, seconds, period) = (
        setting("BENCH_CHURN_MS", 2_000),
        setting("BENCH_SECONDS", 60),
        setting("BENCH_PERIOD", 10),
    );
    let api = FakeApiServer::start().await;
    for i in 0..services {
        let ip = format!("172.20.{}.{}", i / 250, i % 250 + 1);
        api.apply(
            Kind::Service,
            service("ns", &format!("svc-{i}"), &format!("s-{i}"), &[&ip]),
        );
    }
    let ip = |i: u64| format!("10.0.{}.{}", (i / 250) % 250, i % 250 + 1);
    for i in 0..pods {
        api.apply(
            Kind::Pod,
            pod(
                "ns",
                &format!("app-7d4b9c-{i:05}"),
                &format!("p-{i}"),
                NODE,
                &[&ip(i)],
                "app",
            ),
        );
    }
    // Other nodes' pods: the field selector keeps them off this node's watch.
    for i in 0..pods * 4 {
        api.apply(
            Kind::Pod,
            pod(
                "ns",
                &format!("other-{i}"),
                &format!("o-{i}"),
                "other-node",
                &["10.9.0.1"],
                "other",
            ),
        );
    }
    let spool = tempfile::tempdir().unwrap();
    let cli = <Cli as clap::Parser>::parse_from([
        "journal",
        "--node",
        NODE,
        "--rotate-seconds",
        &period.to_string(),
        "--spool-dir",
        spool.path().to_str().unwrap(),
    ]);
    let config = Config::from_cli(cli).unwrap();
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    let (requests_before, bytes_before) = (api.requests(), api.bytes_sent());
    let started = Instant::now();
    let run = tokio::spawn(journal::run(
        config,
        Ok(client),
        tokio::time::sleep(Duration::from_secs(seconds)),
    ));
    // Wait for the first list to be served, then measure the steady state apart.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (requests_listed, bytes_listed) = (api.requests(), api.bytes_sent());
    let mut next = pods;
    let mut replaced = 0u64;
    while started.elapsed() < Duration::from_secs(seconds.saturating_sub(1)) {
        tokio::time::sleep(Duration::from_millis(churn_ms)).await;
        // The oldest pod goes; a new one takes its address.
        let gone = next - pods;
        api.delete(Kind::Pod, &format!("p-{gone}"));
        api.apply(
            Kind::Pod,
            pod(
                "ns",
                &format!("app-7d4b9c-{next:05}"),
                &format!("p-{next}"),
                NODE,
                &[&ip(gone)],
                "app",
            ),
        );
        next += 1;
        replaced += 1;
    }
    run.await.unwrap().unwrap();
    let steady_seconds = started.elapsed().as_secs_f64() - 2.0;
    let dir = spool.path().join(spool::JOURNAL_DIR);
    let mut sizes: Vec<u64> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    sizes.sort_unstable();
    // The first and last segments are partial periods.
    let full = if sizes.len() > 2 {
        &sizes[1..sizes.len() - 1]
    } else {
        &sizes[..]
    };
    let mean = full.iter().sum::<u64>() / full.len().max(1) as u64;
    let per_hour = |n: u64| (n as f64 / steady_seconds * 3600.0).round();
    println!(
        "pods={pods} services={services} replaced={replaced} seconds={seconds} period={period} \
         list_requests={} list_bytes={} steady_requests={} steady_bytes={} steady_bytes_per_hour={} \
         segments={} segment_bytes_mean={mean} segment_bytes_max={}",
        requests_listed - requests_before,
        bytes_listed - bytes_before,
        api.requests() - requests_listed,
        api.bytes_sent() - bytes_listed,
        per_hour(api.bytes_sent() - bytes_listed),
        sizes.len(),
        sizes.last().copied().unwrap_or(0),
    );
}
