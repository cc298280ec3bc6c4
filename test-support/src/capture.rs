//! The launcher under test, capturing UDP to one port on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::fixtures::Spool;
use crate::wait::wait_until;

/// Starts `launcher` (the test crate's binary) capturing UDP to `port` on
/// loopback; returns once tcpdump writes into `active/`.
pub fn start_capture(launcher: &str, spool: &Spool, port: u16, extra: &[&str]) -> Child {
    start_capture_to(launcher, spool, port, extra, Stdio::inherit())
}

/// Like [`start_capture`], with the launcher's log in a file next to the
/// spool's folders (read it with [`launcher_log`]).
pub fn start_capture_logged(launcher: &str, spool: &Spool, port: u16, extra: &[&str]) -> Child {
    let log = std::fs::File::create(log_path(spool)).unwrap();
    start_capture_to(launcher, spool, port, extra, Stdio::from(log))
}

fn log_path(spool: &Spool) -> PathBuf {
    spool.root().join("launcher.log")
}

pub fn launcher_log(spool: &Spool) -> String {
    std::fs::read_to_string(log_path(spool)).unwrap_or_default()
}

fn start_capture_to(
    launcher: &str,
    spool: &Spool,
    port: u16,
    extra: &[&str],
    stderr: Stdio,
) -> Child {
    let child = Command::new(Path::new(launcher))
        .args(["--spool-dir", spool.root().to_str().unwrap()])
        .args(["--interface", "lo"])
        .args(["--filter", &format!("udp dst port {port}")])
        .args(extra)
        .env("RUST_LOG", "info")
        // Any free port: tests run launchers side by side.
        .env("LAUNCHER_METRICS_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "tcpdump to open a file in active/",
        || !Spool::files(&spool.active()).is_empty(),
    );
    // Let tcpdump finish starting (it opens the file, then installs its
    // handlers and reports that it is listening).
    std::thread::sleep(Duration::from_millis(500));
    child
}
