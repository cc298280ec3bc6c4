//! The skip rule shared by the tests that need root, tcpdump or garage:
//! run by hand without them, a test prints why it skips; under `CI=true` a
//! missing prerequisite fails it instead.

use std::path::Path;

/// True when nothing is missing; otherwise prints the skip (or panics in CI).
pub fn present_or_skip(test: &str, missing: Option<String>) -> bool {
    let Some(reason) = missing else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {reason}, and CI=true forbids skipping");
    }
    eprintln!("SKIPPED {test}: {reason}");
    record_skip(test, &reason);
    false
}

/// libtest has no "skipped" outcome, so a skipping test ends as "ok". The
/// test command names a file in `S3TD_SKIPPED_TESTS`; each skip is appended
/// there as one line, and scripts/test reports those tests as skipped, not
/// passed.
fn record_skip(test: &str, reason: &str) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("S3TD_SKIPPED_TESTS") else {
        return;
    };
    let line = format!("{test}: {}\n", reason.replace('\n', " "));
    // One write of one short line with O_APPEND: parallel tests never
    // interleave inside a line.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = written {
        eprintln!("could not record the skip of {test} in {path:?}: {error}");
    }
}

/// Root and the system tcpdump, for tests that capture real packets.
pub fn can_capture(test: &str) -> bool {
    let missing = if !nix::unistd::Uid::effective().is_root() {
        Some("capturing needs root".to_owned())
    } else if !Path::new("/usr/bin/tcpdump").is_file() && !Path::new("/usr/sbin/tcpdump").is_file()
    {
        Some("tcpdump is not installed (apt-get install tcpdump)".to_owned())
    } else {
        None
    };
    present_or_skip(test, missing)
}

/// The Python of the project's tools virtualenv (`$TOOLS_VENV` in
/// scripts/lib/common.sh) when it has DuckDB; otherwise prints the skip (or
/// panics in CI).
pub fn duckdb_python(test: &str) -> Option<std::path::PathBuf> {
    let cache = std::env::var("S3TD_CACHE").unwrap_or_else(|_| "/root/.cache/s3-tcpdump".into());
    let python = Path::new(&cache).join("venv-tools/bin/python");
    let has_duckdb = std::process::Command::new(&python)
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|out| out.status.success());
    let missing = (!has_duckdb).then(|| {
        format!(
            "DuckDB is not installed in {} (scripts/test installs it from PyPI: DUCKDB_VERSION in scripts/lib/common.sh)",
            python.display()
        )
    });
    present_or_skip(test, missing).then_some(python)
}
