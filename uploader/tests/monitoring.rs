//! The monitoring component (manifests/monitoring, issue 23) against real
//! tools and the binaries' own registries: every metric an alert or a
//! dashboard panel names exists, every alert has a runbook section and
//! series fixtures, promtool accepts the rules and their fixtures pass, and
//! kubectl renders the component.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use test_support::{present_or_skip, repo_root};

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn rules() -> String {
    read("manifests/monitoring/prometheusrule.yaml")
}

/// The names a scrape of the exposition yields: a counter's with `_total`,
/// a histogram's `_bucket`, `_sum` and `_count`.
fn scraped_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

fn alerts() -> Vec<String> {
    rules()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_name_is_served_by_a_binary() {
    let mut served = scraped_names(&uploader::metrics::Metrics::new().encode().unwrap());
    served.extend(scraped_names(
        &launcher::metrics::Metrics::new().encode().unwrap(),
    ));
    for file in [
        "manifests/monitoring/prometheusrule.yaml",
        "manifests/monitoring/dashboard.json",
    ] {
        let used = test_support::flag_table::metric_names_in(&read(file));
        assert!(!used.is_empty(), "{file} names no s3_tcpdump metric");
        let unknown: Vec<_> = used.difference(&served).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics neither binary serves: {unknown:?}\nserved: {served:?}"
        );
    }
}

#[test]
fn every_alert_has_a_runbook_section_and_series_fixtures() {
    let alerts = alerts();
    assert!(alerts.len() >= 8, "only {} alerts", alerts.len());
    let runbook = read("docs/runbook.md");
    let fixtures = read("tests/monitoring/rules.test.yaml");
    let rules = rules();
    for alert in &alerts {
        assert!(
            runbook.contains(&format!("\n## {alert}\n")),
            "docs/runbook.md has no section `## {alert}`"
        );
        assert!(
            rules.contains(&format!("docs/runbook.md#{}", alert.to_lowercase())),
            "{alert} has no runbook_url to its section"
        );
        assert!(
            fixtures.contains(&format!("alertname: {alert}\n")),
            "tests/monitoring/rules.test.yaml never evaluates {alert}"
        );
    }
}

/// The rule groups of the PrometheusRule, as a rules file: what follows
/// `spec:`, unindented by two (the file keeps that shape; it says so).
fn rule_groups() -> String {
    let rules = rules();
    let (_, spec) = rules
        .split_once("\nspec:\n")
        .expect("prometheusrule.yaml has no top-level `spec:`");
    assert!(
        spec.starts_with("  groups:\n"),
        "spec: must begin with groups:"
    );
    spec.lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

fn promtool(test: &str) -> Option<PathBuf> {
    let found = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.is_file());
    present_or_skip(
        test,
        found
            .is_none()
            .then(|| "promtool is not installed (apt-get install prometheus)".to_owned()),
    )
    .then(|| found.unwrap())
}

#[test]
fn promtool_accepts_the_rules_and_every_alert_fires_and_stays_quiet_as_its_fixtures_say() {
    let test = "promtool_accepts_the_rules_and_every_alert_fires_and_stays_quiet";
    let Some(promtool) = promtool(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rule_groups()).unwrap();
    std::fs::copy(
        repo_root().join("tests/monitoring/rules.test.yaml"),
        dir.path().join("rules.test.yaml"),
    )
    .unwrap();
    for args in [
        ["check", "rules", "rules.yaml"],
        ["test", "rules", "rules.test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_monitoring_component_renders_a_pod_monitor_the_rules_and_a_dashboard() {
    let test = "the_monitoring_component_renders";
    let kubectl = PathBuf::from("/usr/bin/kubectl");
    let missing = (!kubectl.is_file()).then(|| "kubectl is not installed".to_owned());
    if !present_or_skip(test, missing) {
        return;
    }
    let out = Command::new(&kubectl)
        .args(["kustomize"])
        .arg(repo_root().join("manifests/monitoring"))
        .output()
        .unwrap();
    let rendered = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl kustomize manifests/monitoring: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needed in [
        "kind: PodMonitor",
        "kind: PrometheusRule",
        "grafana_dashboard: \"1\"",
        "port: metrics",
        "port: capture-metrics",
    ] {
        assert!(rendered.contains(needed), "no {needed:?} in:\n{rendered}");
    }
    // The dashboard is JSON a Grafana can load.
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("manifests/monitoring/dashboard.json")).unwrap();
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 6));
}
