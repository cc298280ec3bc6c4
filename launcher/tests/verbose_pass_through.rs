//! tcpdump's `-v` with `-w` rewrites a progress line in place every second
//! (`Got N\r`, never ended by `\n`): the launcher still logs each message
//! as it comes, the progress lines and those after them (issue 20).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use nix::sys::signal::Signal;
use test_support::*;

const LAUNCHER: &str = env!("CARGO_BIN_EXE_launcher");

/// The launcher under test, stopped if the test fails while it runs.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            signal(&self.0, Signal::SIGKILL);
            let _ = self.0.wait();
        }
    }
}

/// The tcpdump messages in the launcher's log (text format).
fn tcpdump_messages(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| line.split_once(" tcpdump: "))
        .map(|(_, message)| message.trim().to_owned())
        .collect()
}

#[test]
fn with_verbose_every_progress_line_and_later_message_is_logged_while_tcpdump_runs() {
    let test = "with_verbose_every_progress_line_and_later_message_is_logged_while_tcpdump_runs";
    if !can_capture(test) {
        return;
    }
    let spool = Spool::new();
    let port = free_port();
    let mut launcher = Stopped(start_capture_logged(LAUNCHER, &spool, port, &["--", "-v"]));
    // The tick is a packet a second: tcpdump's count changes, so it writes
    // a new `Got N\r` every second.
    wait_until(
        Duration::from_secs(10),
        "three progress lines in the log while tcpdump runs",
        || {
            tcpdump_messages(&launcher_log(&spool))
                .iter()
                .filter(|m| m.starts_with("Got "))
                .count()
                >= 3
        },
    );
    signal(&launcher.0, Signal::SIGTERM);
    assert!(launcher.0.wait().unwrap().success());
    let messages = tcpdump_messages(&launcher_log(&spool));
    assert!(
        messages.iter().all(|m| m.len() < 100),
        "a message ran on: {messages:?}"
    );
    let after_progress = messages
        .iter()
        .skip_while(|m| !m.starts_with("Got "))
        .any(|m| m.ends_with("packets captured"));
    assert!(
        after_progress,
        "tcpdump's closing counts are not logged after its progress lines: {messages:?}"
    );
}
