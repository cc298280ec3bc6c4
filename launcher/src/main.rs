//! `launcher`: parses the command line, runs, and maps the result to the
//! exit code — here and nowhere else.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _};
use launcher::cli::Cli;
use launcher::{LaunchError, Plan};
use spool::logging::{self, EXIT_CONFIG, EXIT_RUNTIME};

/// Shown at the end of `--help`; docs/reference.md says the same.
const EXIT_CODES: &str = "\
Exit codes: 0 tcpdump stopped cleanly (or --check passed); 2 the settings are wrong \
(flags, environment, TCPDUMP_ARGS, the tcpdump path, an interface or filter tcpdump \
refused, a metrics address that cannot be bound); 1 the run failed (the spool, starting or waiting for tcpdump). Once tcpdump \
has run, its own exit status is passed through, or 128 + the signal that ended it \
(the last log lines say which).";

fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&Cli::command().after_help(EXIT_CODES).get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    logging::init();
    if cli.probe {
        return launcher::probe(&cli.spool_dir);
    }
    let plan = match Plan::from_cli(cli) {
        Ok(plan) => plan,
        Err(e) => return fail(e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
    {
        Ok(runtime) => runtime,
        Err(e) => return logging::exit_with("launcher", &format!("{e:#}"), EXIT_RUNTIME),
    };
    match runtime.block_on(launcher::run(plan)) {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

fn fail(error: LaunchError) -> ExitCode {
    let (code, context) = if error.is_configuration() {
        (EXIT_CONFIG, "invalid capture settings")
    } else {
        (EXIT_RUNTIME, "capture failed")
    };
    let error = anyhow::Error::new(error).context(context);
    logging::exit_with("launcher", &format!("{error:#}"), code)
}
