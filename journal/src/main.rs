//! `journal`: parses the command line, resolves it into a [`Config`],
//! finds the Kubernetes client's configuration (in-cluster, or
//! `KUBECONFIG`), runs until SIGTERM or SIGINT, and maps the result to the
//! exit code — here and nowhere else.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _};
use journal::config::{Cli, Config};
use journal::errors::RunError;
use spool::logging::{self, EXIT_CONFIG, EXIT_RUNTIME};

/// Shown at the end of `--help`; docs/reference.md says the same.
const EXIT_CODES: &str = "\
Exit codes: 0 stopped by SIGTERM or SIGINT after writing its last segment (or, with --probe, a \
segment was written lately); 2 the command line or configuration is invalid; 1 the spool is \
unusable (or, with --probe, no segment lately). An API server that cannot be reached is not \
an exit: the segments say stale.";

fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&Cli::command().after_help(EXIT_CODES).get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let probe = cli.probe;
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
    if probe {
        return match journal::probe(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => {
                #[allow(clippy::print_stdout)]
                {
                    println!("{reason}");
                }
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
    {
        Ok(rt) => rt,
        Err(e) => return report(&e, EXIT_RUNTIME),
    };
    match runtime.block_on(start(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ RunError::Config(_)) => report(
            &anyhow::Error::new(e).context("invalid configuration"),
            EXIT_CONFIG,
        ),
        Err(e) => report(
            &anyhow::Error::new(e).context("journal failed"),
            EXIT_RUNTIME,
        ),
    }
}

async fn start(config: Config) -> Result<(), RunError> {
    // In a pod: the projected service-account token and the cluster's CA;
    // outside: KUBECONFIG or ~/.kube/config, a plain http:// server too.
    let client = kube::Client::try_default().await.map_err(|e| {
        format!("no Kubernetes client configuration ({e}); in a pod, mount the service-account token into this container (manifests/pod); outside, set KUBECONFIG (kubectl proxy's http://127.0.0.1:8001 works)")
    });
    journal::run(config, client, shutdown()).await
}

/// SIGTERM is how Kubernetes stops the container; SIGINT a person at a
/// terminal. Either ends the run after the segment in progress is written.
async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn report(error: &anyhow::Error, code: u8) -> ExitCode {
    logging::exit_with("journal", &format!("{error:#}"), code)
}
