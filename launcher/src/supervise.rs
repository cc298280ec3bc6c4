//! tcpdump as a supervised child: started, ticked, watched for stalls, its
//! closed files handed over, signals forwarded, reaped, its exit status
//! returned.
//!
//! States: Starting (until tcpdump says it is listening) → Capturing (a
//! tick every second; each file handed over as soon as tcpdump closes it;
//! the stall watch and the capture-side budget) → Draining (a stop was
//! asked for; the kernel's last block still reaches the file) → Signalled
//! (SIGTERM forwarded; SIGKILL after a grace period or at a second signal)
//! → Exited (reaped; every file handed over).
//!
//! Nothing is ever signalled into tcpdump but the stop: `-U` writes each
//! packet as it comes, from tcpdump's own loop.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt as _;
use tokio::process::{Child, ChildStderr, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::budget::{self, Dropped};
use crate::closed::{self, Closed, ClosedFiles};
use crate::errors::LaunchError;
use crate::handover::{hand_over_all, hand_over_closed_file};
use crate::lines::LineSplitter;
use crate::plan::Plan;
use crate::stall::Progress;
use crate::tick::Ticker;

/// How long tcpdump gets to exit after a forwarded signal before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long tcpdump keeps capturing after a stop request: longer than
/// libpcap's one-second block timeout, so every packet the kernel captured
/// before the request has been handed to tcpdump.
const BLOCK_DRAIN: Duration = Duration::from_millis(1_500);
/// How often the capture side checks the spool budget without a hand-over.
const BUDGET_EVERY_TICKS: u64 = 10;

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

    // Watching starts before tcpdump does: no close can be missed.
    let mut closed_files = ClosedFiles::watch(&plan.spool.active())?;
    let mut ticker = Ticker::bind().await?;
    let mut progress = Progress::new(plan.spool.clone());
    let mut dropped = Dropped::default();

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
    let pid = child.id();
    let (listening_tx, mut listening_rx) = oneshot::channel();
    let stderr_logger = child
        .stderr
        .take()
        .map(|stderr| tokio::spawn(log_stderr(stderr, listening_tx)));

    let mut listening = false;
    let mut every_second = tokio::time::interval(spool::tick::TICK_INTERVAL);
    every_second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seconds = 0u64;
    let mut stopping = Stopping::No;
    // Closed captures held back because tcpdump may still be writing them
    // (see `hand_over_unless_open`); tried again every second.
    let mut held: Vec<String> = Vec::new();

    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(LaunchError::Wait)?,
            Ok(()) = &mut listening_rx, if !listening => listening = true,
            _ = every_second.tick(), if !matches!(stopping, Stopping::Signalled { .. } | Stopping::Killed) => {
                ticker.tick();
                progress.observe(listening && plan.ticks_reach_capture);
                seconds += 1;
                if seconds.is_multiple_of(BUDGET_EVERY_TICKS) {
                    budget::enforce(&plan.spool, plan.max_spool_bytes, &mut dropped);
                }
                if !held.is_empty() {
                    held = hand_over_unless_open(plan, pid, std::mem::take(&mut held), &mut progress);
                }
            }
            closed = closed_files.next() => {
                let mut names: Vec<String> = match closed {
                    Closed::File(name) => vec![name.to_string_lossy().into_owned()],
                    Closed::Overflow => {
                        warn!("lost track of closed files (inotify queue overflow); looking at every file");
                        plan.spool
                            .active_captures()
                            .unwrap_or_default()
                            .iter()
                            .map(spool::CaptureFile::file_name)
                            .collect()
                    }
                };
                names.append(&mut held);
                held = hand_over_unless_open(plan, pid, names, &mut progress);
                budget::enforce(&plan.spool, plan.max_spool_bytes, &mut dropped);
            }
            _ = terminate.recv() => stopping = stopping.on_signal(&child, "SIGTERM"),
            _ = interrupt.recv() => stopping = stopping.on_signal(&child, "SIGINT"),
            _ = tokio::time::sleep_until(stopping.deadline()), if stopping.deadline_pending() => {
                stopping = stopping.on_deadline(&child);
            }
        }
    };
    if let Some(logger) = stderr_logger {
        finish_logging(logger).await;
    }
    log_exit(status);
    let last = hand_over_all(&plan.spool)?;
    if last.failed > 0 {
        error!(
            failed = last.failed,
            "some captures could not be handed over; they stay in active/ for the next start"
        );
    }
    Ok(status)
}

/// Hands over files reported closed, except one tcpdump may still be
/// writing, and returns the names held back for that reason.
///
/// Which file that is comes from tcpdump's descriptor table when the
/// launcher may read it (someone else may have opened and closed the live
/// file for writing, e.g. `touch`; after lost events every file is a
/// candidate). The image's tcpdump has file capabilities, which make it
/// non-dumpable, so in a pod the table is unreadable: then the newest
/// capture in `active/` is held, since tcpdump writes one file at a time
/// and starts each new one after the last, until a newer one exists (the
/// next second's retry, normally) or tcpdump has exited.
fn hand_over_unless_open(
    plan: &Plan,
    pid: Option<u32>,
    mut names: Vec<String>,
    progress: &mut Progress,
) -> Vec<String> {
    crate::handover::sort_in_capture_order(&mut names);
    names.dedup();
    let (may_be_written, table_read) = match pid.map(closed::open_files) {
        Some(Some(open)) => (open, true),
        Some(None) => (
            plan.spool
                .active_captures()
                .unwrap_or_default()
                .pop()
                .map(|newest| newest.path)
                .into_iter()
                .collect(),
            false,
        ),
        None => (Vec::new(), true),
    };
    let mut held = Vec::new();
    for name in names {
        let name = name.as_str();
        if may_be_written.contains(&plan.spool.active().join(name)) {
            // An open file's own close will come; an unread table's guess
            // is tried again.
            if !table_read {
                held.push(name.to_owned());
            }
            continue;
        }
        match hand_over_closed_file(&plan.spool, name) {
            Ok(Some(bytes)) => progress.handed_over(bytes),
            Ok(None) => {}
            Err(e) => {
                error!(error = %e, "could not hand over a closed capture; it is handed over when capture stops")
            }
        }
    }
    held
}

/// How far stopping has got.
#[derive(Debug, Clone, Copy)]
enum Stopping {
    No,
    /// A stop was asked for; tcpdump keeps running until `forward_at` so
    /// that what the kernel captured before the request reaches the file:
    /// libpcap hands packets over in blocks, up to a second late, and
    /// tcpdump drops whatever is still in the ring when it exits.
    Draining {
        forward_at: Instant,
    },
    /// SIGTERM sent; SIGKILL at `kill_at`.
    Signalled {
        kill_at: Instant,
    },
    /// SIGKILL sent; waiting to reap.
    Killed,
}

impl Stopping {
    fn on_signal(self, child: &Child, received: &str) -> Self {
        match self {
            Stopping::No => {
                info!(signal = received, drain = ?BLOCK_DRAIN, "stopping tcpdump once the kernel has handed over what it captured");
                Stopping::Draining {
                    forward_at: Instant::now() + BLOCK_DRAIN,
                }
            }
            _ => {
                warn!(signal = received, "second signal: killing tcpdump now");
                send(child, Signal::SIGKILL);
                Stopping::Killed
            }
        }
    }

    fn on_deadline(self, child: &Child) -> Self {
        match self {
            Stopping::Draining { .. } => {
                send(child, Signal::SIGTERM);
                Stopping::Signalled {
                    kill_at: Instant::now() + STOP_GRACE,
                }
            }
            Stopping::Signalled { .. } => {
                warn!(grace = ?STOP_GRACE, "tcpdump did not stop in time; sending SIGKILL");
                send(child, Signal::SIGKILL);
                Stopping::Killed
            }
            other => other,
        }
    }

    fn deadline_pending(&self) -> bool {
        matches!(self, Stopping::Draining { .. } | Stopping::Signalled { .. })
    }

    fn deadline(&self) -> Instant {
        match self {
            Stopping::Draining { forward_at } => *forward_at,
            Stopping::Signalled { kill_at } => *kill_at,
            // Not polled: the branch is disabled without a pending deadline.
            Stopping::No | Stopping::Killed => Instant::now(),
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
/// says it is listening: its signal handlers are installed by then. Reads
/// in chunks into a [`LineSplitter`], so memory stays bounded whatever
/// tcpdump writes (`-v` rewrites a progress line in place, with `\r`).
async fn log_stderr(mut stderr: ChildStderr, listening: oneshot::Sender<()>) {
    let mut listening = Some(listening);
    let mut splitter = LineSplitter::default();
    let mut chunk = [0u8; 4096];
    let mut log_line = |text: &str| {
        if text.starts_with("tcpdump: listening on")
            && let Some(tx) = listening.take()
        {
            let _ = tx.send(());
        }
        log_tcpdump_line(text);
    };
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => splitter.push(&chunk[..read], &mut log_line),
        }
    }
    splitter.finish(&mut log_line);
}

fn log_tcpdump_line(text: &str) {
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
