//! `uploader`: parses the command line, resolves it into a [`Config`], runs
//! and maps the result to the exit code — here and nowhere else.
//!
//! Exit codes: 0 done; 1 the run failed (`--check` found a problem,
//! `--once` left captures behind, the spool is unusable); 2 the command line
//! or configuration is invalid.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use uploader::cli::Cli;
use uploader::config::Config;
use uploader::errors::RunError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let config = match Config::from_cli(cli) {
        Ok(config) => config,
        Err(e) => return report(&anyhow::Error::new(e).context("invalid configuration"), 2),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
    {
        Ok(rt) => rt,
        Err(e) => return report(&e, 1),
    };
    match runtime.block_on(uploader::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::Config(e)) => {
            report(&anyhow::Error::new(e).context("invalid configuration"), 2)
        }
        Err(e @ RunError::LeftBehind(_)) => report(
            &anyhow::Error::new(e).context("--once did not upload everything"),
            1,
        ),
        Err(e) => report(&anyhow::Error::new(e).context("uploader failed"), 1),
    }
}

fn report(error: &anyhow::Error, code: u8) -> ExitCode {
    if json_logs() {
        tracing::error!(error = format!("{error:#}"), "exiting");
    } else {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("uploader: {error:#}");
        }
    }
    ExitCode::from(code)
}

fn json_logs() -> bool {
    std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"))
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json_logs() {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
