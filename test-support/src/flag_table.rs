//! The README's flag reference, generated from the clap definitions so it
//! cannot drift: each binary has a test that compares its table with the
//! README and, with `UPDATE_README=1`, rewrites it.

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

pub fn readme_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")
}

/// Asserts the README block between the `<!-- BEGIN name -->` and
/// `<!-- END name -->` markers equals `table`; rewrites it when
/// `UPDATE_README=1`.
pub fn assert_readme_block(name: &str, table: &str) {
    let path = readme_path();
    let readme = std::fs::read_to_string(&path).unwrap();
    let begin = format!("<!-- BEGIN {name} -->\n");
    let end = format!("<!-- END {name} -->");
    let start = readme
        .find(&begin)
        .unwrap_or_else(|| panic!("README.md has no {begin:?} marker"))
        + begin.len();
    let stop = readme[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("README.md has no {end:?} marker"))
        + start;
    if readme[start..stop] == *table {
        return;
    }
    if std::env::var("UPDATE_README").as_deref() == Ok("1") {
        let updated = format!("{}{}{}", &readme[..start], table, &readme[stop..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!(
        "README.md's {name} block is out of date with the code; run `UPDATE_README=1 cargo test readme` and commit.\nexpected:\n{table}"
    );
}
