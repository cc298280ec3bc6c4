//! `uploader`: parses the command line, resolves it into a [`Config`], runs
//! and maps the result to the exit code — here and nowhere else.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser as _};
use spool::logging::{self, EXIT_CONFIG, EXIT_RUNTIME};
use uploader::cli::{Cli, ProbeCli};
use uploader::config::Config;
use uploader::errors::RunError;

/// Shown at the end of `--help`; docs/reference.md says the same.
const EXIT_CODES: &str = "\
Exit codes: 0 done; 2 the command line or configuration is invalid; 1 the run failed \
(--check found a problem, --once left captures behind, the spool is unusable).";

fn main() -> ExitCode {
    // `uploader probe …` is a client of a running uploader, not an uploader:
    // none of the uploader's settings apply to it.
    if std::env::args_os().nth(1).is_some_and(|a| a == "probe") {
        return probe(&ProbeCli::parse_from(std::env::args_os().skip(1)));
    }
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
        // The admin address is a setting: a taken port is fixed there.
        Err(e @ RunError::MetricsBind { .. }) => report(
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

/// An exec probe: 0 when the admin route answers 200, 1 otherwise. What it
/// prints is what `kubectl describe pod` shows for a failed probe.
fn probe(cli: &ProbeCli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("uploader probe: cannot start the async runtime: {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(uploader::admin::ask(cli.metrics_addr, cli.route)) {
        Ok(answer) => {
            #[allow(clippy::print_stdout)]
            {
                println!("{answer}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            #[allow(clippy::print_stdout)]
            {
                println!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn report(error: &anyhow::Error, code: u8) -> ExitCode {
    logging::exit_with("uploader", &format!("{error:#}"), code)
}
