//! The reference page's flag tables (docs/reference.md), generated from the
//! clap definitions so they cannot drift: each binary has a test that
//! compares its table with the page and, with `UPDATE_DOCS=1`, rewrites it.

use std::path::{Path, PathBuf};

/// One markdown table row per flag of `command`.
pub fn flag_table(command: &clap::Command) -> String {
    let mut table =
        String::from("| flag | environment | default | what it does |\n|---|---|---|---|\n");
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else {
            if arg.is_positional() {
                let name = arg.get_value_names().and_then(|v| v.first().cloned());
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                table.push_str(&format!(
                    "| `-- {}…` | | | {} |\n",
                    name.map(|n| n.to_string()).unwrap_or_default(),
                    one_line(&help)
                ));
            }
            continue;
        };
        if arg.is_hide_set() || long == "help" || long == "version" {
            continue;
        }
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let default = arg
            .get_default_values()
            .iter()
            .map(|v| format!("`{}`", v.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(", ");
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        table.push_str(&format!(
            "| `--{long}` | {env} | {default} | {} |\n",
            one_line(&help)
        ));
    }
    table
}

/// The exit codes paragraph at the end of `binary --help`, on one line.
pub fn exit_codes(binary: &str) -> String {
    let output = std::process::Command::new(binary)
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success(), "{binary} --help failed");
    let help = String::from_utf8(output.stdout).unwrap();
    let at = help
        .find("Exit codes:")
        .unwrap_or_else(|| panic!("{binary} --help does not list its exit codes"));
    format!("{}\n", one_line(&help[at..]))
}

fn one_line(help: &str) -> String {
    help.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The reference page the generated tables live in.
pub fn reference_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reference.md")
}

/// Asserts the reference page's block between the `<!-- BEGIN name -->`
/// and `<!-- END name -->` markers equals `table`; rewrites it when
/// `UPDATE_DOCS=1`.
pub fn assert_reference_block(name: &str, table: &str) {
    let path = reference_path();
    let page = std::fs::read_to_string(&path).unwrap();
    let begin = format!("<!-- BEGIN {name} -->\n");
    let end = format!("<!-- END {name} -->");
    let start = page
        .find(&begin)
        .unwrap_or_else(|| panic!("docs/reference.md has no {begin:?} marker"))
        + begin.len();
    let stop = page[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("docs/reference.md has no {end:?} marker"))
        + start;
    if page[start..stop] == *table {
        return;
    }
    if std::env::var("UPDATE_DOCS").as_deref() == Ok("1") {
        let updated = format!("{}{}{}", &page[..start], table, &page[stop..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!(
        "docs/reference.md's {name} block is out of date with the code; run `UPDATE_DOCS=1 cargo test reference` and commit.\nexpected:\n{table}"
    );
}

/// One markdown table row per metric of a Prometheus text exposition, from
/// its `# HELP` and `# TYPE` lines: the name as scraped (a counter's ends in
/// `_total`), its type and its help text.
pub fn metrics_table(exposition: &str) -> String {
    let mut table = String::from("| metric | type | meaning |\n|---|---|---|\n");
    let mut help: Option<(&str, &str)> = None;
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ');
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let text = help
                .filter(|(helped, _)| *helped == name)
                .map_or("", |(_, text)| text);
            let scraped = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            table.push_str(&format!(
                "| `{scraped}` | {kind} | {} |\n",
                one_line(text.trim_end_matches('.'))
            ));
        }
    }
    table
}

/// Every `s3_tcpdump_…` metric name a text (alert rules, a dashboard, a
/// query) mentions.
pub fn metric_names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("s3_tcpdump_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}
