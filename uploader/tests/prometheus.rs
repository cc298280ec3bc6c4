//! A real Prometheus scrapes a running launcher (capturing on loopback)
//! and uploader (whose store refuses connections, so that its failure
//! counter has a series too), and every expression of the alerts and of
//! the dashboard is asked of it (issue 23): each must parse, every
//! `s3_tcpdump_…` metric it names must have series, and every dashboard
//! query must return some. A misspelt metric name fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use test_support::*;

const UPLOADER: &str = env!("CARGO_BIN_EXE_uploader");
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// The launcher binary beside this test's (`cargo build --workspace`
/// builds it; scripts/test does before the tests).
fn launcher_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent()?.parent()?;
    let launcher = profile_dir.join("launcher");
    launcher.is_file().then_some(launcher)
}

/// Prometheus killed on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_prometheus(
    dir: &Path,
    web: SocketAddr,
    launcher: SocketAddr,
    uploader: SocketAddr,
) -> Prometheus {
    // The labels the PodMonitor's relabelling and the operator give.
    let target = |addr: SocketAddr, container: &str| {
        format!(
            "      - targets: ['{addr}']\n        labels: {{namespace: s3-tcpdump, pod: p1, node: n1, container: {container}}}\n"
        )
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: s3-tcpdump/s3-tcpdump\n    static_configs:\n{}{}",
        target(launcher, "capture"),
        target(uploader, "uploader")
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let child = Command::new(PROMETHEUS)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    Prometheus(child)
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The answer of `/api/v1/query`: its status and its result's series.
fn query(web: SocketAddr, expr: &str) -> Result<usize, String> {
    let (status, body) = http_get(
        web,
        &format!("/api/v1/query?query={}", percent_encode(expr)),
    );
    let answer: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
    if answer["status"] != "success" {
        return Err(format!("{}: {}", answer["errorType"], answer["error"]));
    }
    Ok(answer["data"]["result"].as_array().map_or(0, Vec::len))
}

/// The `expr:` of every alert, inline or as a `|` block.
fn alert_expressions() -> Vec<String> {
    let rules =
        std::fs::read_to_string(repo_root().join("manifests/monitoring/prometheusrule.yaml"))
            .unwrap();
    let lines: Vec<&str> = rules.lines().collect();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr: ") else {
            continue;
        };
        if value.trim() != "|" {
            exprs.push(value.to_owned());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.len() - l.trim_start().len() > indent)
            .map(|l| l.trim())
            .collect();
        exprs.push(block.join("\n"));
    }
    exprs
}

/// Every panel query of the dashboard, its variables given values.
fn dashboard_expressions() -> Vec<String> {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("manifests/monitoring/dashboard.json")).unwrap(),
    )
    .unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| {
            t["expr"]
                .as_str()
                .unwrap()
                .replace("$node", ".*")
                .replace("$__rate_interval", "1m")
        })
        .collect()
}

#[test]
fn a_real_prometheus_finds_every_metric_of_the_alerts_and_the_dashboard() {
    let test = "a_real_prometheus_finds_every_metric_of_the_alerts_and_the_dashboard";
    if !can_capture(test) {
        return;
    }
    let launcher_bin = launcher_binary();
    let missing = if !Path::new(PROMETHEUS).is_file() {
        Some("prometheus is not installed (apt-get install prometheus)".to_owned())
    } else if launcher_bin.is_none() {
        Some("the launcher binary is not built (cargo build --workspace)".to_owned())
    } else {
        None
    };
    if !present_or_skip(test, missing) {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    let launcher_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let uploader_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut launcher = start_capture(
        launcher_bin.unwrap().to_str().unwrap(),
        &spool,
        port,
        &[
            "--rotate-seconds",
            "1",
            "--stats-interval-ms",
            "500",
            "--metrics-addr",
            &launcher_addr.to_string(),
        ],
    );
    let up = Running::spawn(uploader_with_unreachable_store(
        UPLOADER,
        &spool,
        uploader_addr,
    ));
    let dir = tempfile::tempdir().unwrap();
    let _prometheus = start_prometheus(dir.path(), web, launcher_addr, uploader_addr);
    let log = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();

    wait_until(
        Duration::from_secs(30),
        "Prometheus to scrape both containers",
        || query(web, "sum(up{job=\"s3-tcpdump/s3-tcpdump\"}) == 2") == Ok(1),
    );
    send_numbered(port, 0, 10_000, 2_000);
    // The uploader's failure counter gets its series when an upload of a
    // handed-over capture fails (its store refuses connections).
    wait_until(Duration::from_secs(30), "an upload failure scraped", || {
        query(web, "s3_tcpdump_uploader_failures_total").is_ok_and(|n| n > 0)
    });
    std::thread::sleep(Duration::from_secs(3));

    let alerts = alert_expressions();
    let panels = dashboard_expressions();
    assert!(
        alerts.len() >= 8 && panels.len() >= 10,
        "{alerts:?} {panels:?}"
    );
    let mut problems = Vec::new();
    for expr in alerts.iter().chain(&panels) {
        if let Err(e) = query(web, expr) {
            problems.push(format!("{expr}: does not evaluate: {e}"));
        }
        for name in test_support::flag_table::metric_names_in(expr) {
            if query(web, &name).is_ok_and(|n| n == 0) {
                problems.push(format!("{expr}: {name} has no series"));
            }
        }
    }
    for expr in &panels {
        if query(web, expr).is_ok_and(|n| n == 0) {
            problems.push(format!("dashboard query returns nothing: {expr}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\nPrometheus log:\n{}\nuploader log:\n{}",
        problems.join("\n"),
        log(),
        up.stderr()
    );
    signal(&launcher, Signal::SIGTERM);
    assert!(launcher.wait().unwrap().success());
}
