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
