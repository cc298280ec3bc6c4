//! `uploader`: parses the command line, resolves it into a [`Config`], runs
//! and maps the result to the exit code — here and nowhere else.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _};
use spool::logging::{self, EXIT_CONFIG, EXIT_RUNTIME};
use uploader::cli::Cli;
use uploader::config::Config;
use uploader::errors::RunError;

/// Shown at the end of `--help`; the README's reference says the same.
const EXIT_CODES: &str = "\
Exit codes: 0 done; 2 the command line or configuration is invalid; 1 the run failed \
(--check found a problem, --once left captures behind, the spool is unusable).";

fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&Cli::command().after_help(EXIT_CODES).get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    logging::init();
    let config = match Config::from_cli(cli) {
        Ok(config) => config,
        Err(e) => {
            return report(
                &anyhow::Error::new(e).context("invalid configuration"),
                EXIT_CONFIG,
            );
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
    {
        Ok(rt) => rt,
        Err(e) => return report(&e, EXIT_RUNTIME),
    };
    match runtime.block_on(uploader::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::Config(e)) => report(
            &anyhow::Error::new(e).context("invalid configuration"),
            EXIT_CONFIG,
        ),
        Err(e @ RunError::LeftBehind(_)) => report(
            &anyhow::Error::new(e).context("--once did not upload everything"),
            EXIT_RUNTIME,
        ),
        Err(e) => report(
            &anyhow::Error::new(e).context("uploader failed"),
            EXIT_RUNTIME,
        ),
    }
}

fn report(error: &anyhow::Error, code: u8) -> ExitCode {
    logging::exit_with("uploader", &format!("{error:#}"), code)
}
