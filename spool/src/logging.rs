//! How both binaries log and end: one set-up, so that the launcher's and the
//! uploader's lines read alike in one pod's logs.
//!
//! Logs go to stderr, filtered by `RUST_LOG` (default `info`), coloured only
//! on a terminal. `LOG_FORMAT=json` gives one flat JSON object a line
//! (`timestamp`, `level`, `message` and the event's fields side by side),
//! for a log pipeline.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// Exit code: the command line or the settings are wrong; fix them and
/// start again.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code: the run failed (the spool, S3, a child process).
pub const EXIT_RUNTIME: u8 = 1;

/// True when `LOG_FORMAT=json` (any case).
pub fn json_logs() -> bool {
    std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"))
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json_logs() {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Reports why `program` stops and returns `code` for `main` to return. The
/// reason is the last line: a JSON log event under `LOG_FORMAT=json`, else
/// `program: reason` (no timestamp or level to read past).
pub fn exit_with(program: &str, reason: &str, code: u8) -> ExitCode {
    if json_logs() {
        tracing::error!(program, error = reason, code, "exiting");
    } else {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("{program}: {reason}");
        }
    }
    ExitCode::from(code)
}

/// The log lines the fault ledger (test-support) counts, defined once here:
/// each is logged by its binary (which re-exports it under its own name)
/// and matched by the ledger, which cannot depend on the binaries' crates
/// (their tests depend on it).
pub mod counted {
    /// Logged for each capture dropped unsent (the fault ledger counts them).
    pub const UPLOADER_BUDGET_DROPPED: &str =
        "spool over budget: dropped the oldest waiting capture unsent";
    /// Logged when the kernel dropped watch events (the fault ledger counts it).
    pub const UPLOADER_WATCH_OVERFLOW: &str =
        "change events of ready/ were lost (inotify queue overflow); scanning ready/ in full";
    /// What the launcher logs for each capture it drops (the fault ledger
    /// counts them).
    pub const LAUNCHER_BUDGET_DROPPED: &str = "spool over budget and not drained by the uploader: dropped the oldest waiting capture unsent";
    /// What the launcher logs when tcpdump has stopped writing (the fault
    /// ledger counts it).
    pub const TCPDUMP_STALLED: &str = "capture is stalled: tcpdump shows no sign of capturing (`why` says which sign is missing; tcpdump hung or stopped, or the interface is gone); the liveness probe fails from now on";
    /// What the launcher logs when a stalled tcpdump writes again.
    pub const TCPDUMP_WRITING_AGAIN: &str = "tcpdump is writing again";
    /// How tcpdump says it has opened the interface (and installed its signal
    /// handlers).
    pub const TCPDUMP_LISTENING: &str = "tcpdump: listening on";
}
