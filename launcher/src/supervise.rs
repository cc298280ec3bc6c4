//! tcpdump as a supervised child: started, flushed, its closed files handed
//! over, signals forwarded, reaped, its exit status returned.
//!
//! States: Starting (until tcpdump says it is listening; SIGUSR2 would kill
//! it before it installs its handler) → Capturing (flush + hand over on
//! every tick) → Stopping (signal forwarded, SIGKILL after a grace period
//! or a second signal) → Exited (reaped; every file handed over).

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::errors::LaunchError;
use crate::handover::{Closed, hand_over_closed};
use crate::plan::Plan;

/// How long tcpdump gets to exit after a forwarded signal before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs tcpdump with the preflight arguments (`-d`: open the interface,
/// compile the filter, capture nothing) so a bad interface or filter is
/// reported in tcpdump's own words before anything starts.
pub async fn preflight(plan: &Plan) -> Result<(), LaunchError> {
    let output = Command::new(&plan.tcpdump)
        .args(&plan.preflight_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|source| LaunchError::Spawn {
            path: plan.tcpdump.clone(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    Err(LaunchError::TcpdumpRefused {
        interface: plan.interface.clone(),
        filter: plan.filter.clone(),
        message,
    })
}

/// Captures until tcpdump exits; returns tcpdump's exit status.
pub async fn capture(plan: &Plan) -> Result<ExitStatus, LaunchError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(LaunchError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(LaunchError::Signals)?;

    info!(command = %plan.command_line(), "starting tcpdump");
    let mut child = Command::new(&plan.tcpdump)
        .args(&plan.tcpdump_args)
        // tcpdump names files with strftime in local time: make that UTC.
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group: a terminal's Ctrl-C reaches only the
        // launcher, which decides how tcpdump stops.
        .process_group(0)
        .spawn()
        .map_err(|source| LaunchError::Spawn {
            path: plan.tcpdump.clone(),
            source,
        })?;
    let (listening_tx, mut listening_rx) = oneshot::channel();
    let stderr_logger = child
        .stderr
        .take()
        .map(|stderr| tokio::spawn(log_stderr(stderr, listening_tx)));

    let mut listening = false;
    let mut ticker = tokio::time::interval(plan.flush_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop_deadline: Option<tokio::time::Instant> = None;
    let far_future = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);

    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(LaunchError::Wait)?,
            Ok(()) = &mut listening_rx, if !listening => listening = true,
            _ = ticker.tick(), if listening && stop_deadline.is_none() => {
                send(&child, Signal::SIGUSR2);
                if let Err(e) = hand_over_closed(&plan.spool, Closed::AllButNewest) {
                    error!(error = %e, "could not hand over a closed capture; will retry");
                }
            }
            _ = terminate.recv() => stop_deadline = Some(stop(&child, stop_deadline, "SIGTERM")),
            _ = interrupt.recv() => stop_deadline = Some(stop(&child, stop_deadline, "SIGINT")),
            _ = tokio::time::sleep_until(stop_deadline.unwrap_or(far_future)), if stop_deadline.is_some() => {
                warn!(grace = ?STOP_GRACE, "tcpdump did not stop in time; sending SIGKILL");
                send(&child, Signal::SIGKILL);
                stop_deadline = Some(far_future);
            }
        }
    };
    if let Some(logger) = stderr_logger {
        finish_logging(logger).await;
    }
    log_exit(status);
    hand_over_closed(&plan.spool, Closed::All)?;
    Ok(status)
}

/// First signal: forward SIGTERM and start the grace timer. Second: SIGKILL.
fn stop(
    child: &Child,
    deadline: Option<tokio::time::Instant>,
    received: &str,
) -> tokio::time::Instant {
    match deadline {
        None => {
            info!(signal = received, "stopping tcpdump");
            send(child, Signal::SIGTERM);
            tokio::time::Instant::now() + STOP_GRACE
        }
        Some(_) => {
            warn!(signal = received, "second signal: killing tcpdump now");
            send(child, Signal::SIGKILL);
            tokio::time::Instant::now()
        }
    }
}

fn send(child: &Child, signal: Signal) {
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        return;
    };
    if let Err(errno) = kill(Pid::from_raw(pid), signal) {
        warn!(%signal, %errno, "could not signal tcpdump");
    }
}

/// tcpdump's stderr, line by line, as log events. Reports when tcpdump
/// says it is listening: its signal handlers are installed by then.
async fn log_stderr(stderr: ChildStderr, listening: oneshot::Sender<()>) {
    let mut listening = Some(listening);
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.starts_with("tcpdump: listening on")
            && let Some(tx) = listening.take()
        {
            let _ = tx.send(());
        }
        match dropped_by_kernel(text) {
            Some(dropped) if dropped > 0 => warn!(
                target: "tcpdump",
                dropped,
                "{text} (raise --buffer-kib, shorten --snaplen or narrow the filter)"
            ),
            Some(dropped) => info!(target: "tcpdump", dropped, "{text}"),
            None => info!(target: "tcpdump", "{text}"),
        }
    }
}

async fn finish_logging(logger: JoinHandle<()>) {
    // tcpdump's last lines (its packet counts) come after it exits; a child
    // that left a grandchild holding stderr must not hang the launcher.
    let _ = tokio::time::timeout(Duration::from_secs(2), logger).await;
}

/// The count in tcpdump's closing "N packets dropped by kernel" line.
fn dropped_by_kernel(line: &str) -> Option<u64> {
    line.strip_suffix(" packets dropped by kernel")
        .or_else(|| line.strip_suffix(" packet dropped by kernel"))
        .and_then(|n| n.trim().parse().ok())
}

fn log_exit(status: ExitStatus) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => info!("tcpdump exited"),
        (Some(code), _) => error!(code, "tcpdump exited with an error"),
        (None, Some(signal)) => warn!(signal, "tcpdump was killed by a signal"),
        (None, None) => warn!("tcpdump ended without a status"),
    }
}

/// The launcher's exit code for tcpdump's status: its code, or 128 + signal.
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kernel_drop_count() {
        assert_eq!(dropped_by_kernel("12 packets dropped by kernel"), Some(12));
        assert_eq!(dropped_by_kernel("1 packet dropped by kernel"), Some(1));
        assert_eq!(dropped_by_kernel("12 packets captured"), None);
    }
}
