//! `chaos`: the fault ledger. Runs the release launcher and uploader
//! against a local garage under injected faults, then proves from the
//! bucket that every datagram the capture saw arrived once, whole.
//!
//!   chaos --minutes 3 [--seed S] [--rate R] [--faults mixed|kind,kind]
//!         [--high-rate-secs N] [--burst-files N]
//!
//! Prints one summary; exits 0 when every invariant held, 1 when one
//! broke, 2 when the run could not be made. Needs root (tcpdump, network
//! namespaces, tmpfs). `bench/chaos` builds the binaries and runs it.
#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use test_support::ledger::{self, FaultKind, Scenario, parse_faults};

#[derive(Debug, Parser)]
#[command(
    about = "The fault ledger: the whole pipeline under faults, every datagram accounted for"
)]
struct Cli {
    /// Minutes of faults (traffic runs as long; the drain and the count
    /// come after), e.g. `--minutes 30`.
    #[arg(long, default_value_t = 3.0)]
    minutes: f64,
    /// Seed of every random choice (fault order, timing, durations);
    /// printed, so a run can be repeated. [default: from the clock]
    #[arg(long)]
    seed: Option<u64>,
    /// Numbered datagrams a second outside the high-rate phase.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// `mixed` (every kind once, then drawn at random) or kinds separated
    /// by commas, e.g. `uploader-kill,flip`.
    #[arg(long, default_value = "mixed")]
    faults: String,
    /// Seconds of the high-rate phase (a quarter into the run; 0: none).
    #[arg(long, default_value_t = 60)]
    high_rate_secs: u64,
    /// Datagrams a second in the high-rate phase.
    #[arg(long, default_value_t = 20_000)]
    high_rate: u64,
    /// Synthetic captures the burst fault puts into ready/ at once.
    #[arg(long, default_value_t = 10_000)]
    burst_files: u32,
    /// The launcher to test. [default: target/release/launcher]
    #[arg(long)]
    launcher: Option<PathBuf>,
    /// The uploader to test. [default: target/release/uploader]
    #[arg(long)]
    uploader: Option<PathBuf>,
    /// The garage binary.
    #[arg(long, env = "GARAGE_BIN", default_value = test_support::garage::DEFAULT_GARAGE)]
    garage: PathBuf,
    /// Keep the work folder (logs, garage data) even when the run passes.
    #[arg(long)]
    keep: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let repo = test_support::repo_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"));
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() % 1_000_000)
            .unwrap_or(1)
    });
    let faults: Vec<FaultKind> = match parse_faults(&cli.faults) {
        Ok(faults) => faults,
        Err(e) => {
            eprintln!("chaos: --faults: {e}");
            return ExitCode::from(2);
        }
    };
    let scenario = Scenario {
        duration: Duration::from_secs_f64(cli.minutes.max(0.0) * 60.0),
        seed,
        rate: cli.rate.max(1),
        faults,
        high_rate_secs: cli.high_rate_secs,
        high_rate: cli.high_rate.max(1),
        burst_files: cli.burst_files,
        launcher: cli
            .launcher
            .unwrap_or_else(|| target.join("release/launcher")),
        uploader: cli
            .uploader
            .unwrap_or_else(|| target.join("release/uploader")),
        garage: cli.garage,
        repo,
        keep: cli.keep,
    };
    if let Some(missing) = [&scenario.launcher, &scenario.uploader, &scenario.garage]
        .into_iter()
        .find(|p| !p.is_file())
    {
        eprintln!("chaos: no binary at {}", missing.display());
        return ExitCode::from(2);
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("chaos: needs root (tcpdump, network namespaces, tmpfs)");
        return ExitCode::from(2);
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    watch_signals(&interrupted);
    match ledger::run(&scenario, &interrupted) {
        Ok(report) => {
            print!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("chaos: the run could not be made: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// SIGINT and SIGTERM end the fault phase early; the run still cleans up
/// (network namespace, tmpfs, processes) and reports.
fn watch_signals(interrupted: &Arc<AtomicBool>) {
    let flag = interrupted.clone();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                eprintln!("chaos: stopping early; cleaning up");
                flag.store(true, Ordering::SeqCst);
            }
        });
    });
}
