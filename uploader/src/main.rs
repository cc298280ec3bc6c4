//! `uploader`: parses the command line, resolves it into a [`Config`], runs
//! and maps the result to the exit code — here and nowhere else.
//!
//! Exit codes: 0 done; 1 the run failed (`--check` found a problem,
//! `--once` left captures behind, the spool is unusable); 2 the command line
//! or configuration is invalid.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use uploader::cli::{Cli, ProbeCli};
use uploader::config::Config;
use uploader::errors::RunError;

fn main() -> ExitCode {
    // `uploader probe …` is a client of a running uploader, not an uploader:
    // none of the uploader's settings apply to it.
    if std::env::args_os().nth(1).is_some_and(|a| a == "probe") {
        return probe(&ProbeCli::parse_from(std::env::args_os().skip(1)));
    }
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
