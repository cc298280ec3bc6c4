//! tcpdump as a supervised child: started, ticked, watched for stalls, its
//! closed files handed over, signals forwarded, reaped, its exit status
//! returned.
//!
//! One `select!` receives everything that happens: tcpdump reaped, tcpdump
//! listening, the one-second timer, the timer that asks tcpdump for its
//! counters ([`crate::stats`]), a closed file, SIGTERM and SIGINT, and the
//! stop deadlines. Where tcpdump is in its life, and so which of those
//! matter, is the [`Lifecycle`] state machine; what capturing does with
//! them is [`CaptureSide`].

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt as _;
use tokio::process::{Child, ChildStderr, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::budget;
use crate::cli::CaptureMode;
use crate::closed::{self, Closed, ClosedFiles};
use crate::errors::LaunchError;
use crate::handover::{hand_over_all, hand_over_closed_file};
use crate::lifecycle::{BLOCK_DRAIN, Effect, KillCause, Lifecycle, STOP_GRACE};
use crate::lines::LineSplitter;
use crate::metrics::Metrics;
use crate::plan::Plan;
use crate::stall::{Progress, Watch};
use crate::stats::{Accumulated, Answers, DropLedger, ReportReader, SharedAnswers};
use crate::tick::Ticker;

/// How often the capture side checks the spool budget without a hand-over.
const BUDGET_EVERY_TICKS: u64 = 10;
/// How tcpdump says it has opened the interface (and installed its signal
/// handlers).
pub use spool::logging::counted::TCPDUMP_LISTENING;

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
pub async fn capture(plan: &Plan, metrics: Arc<Metrics>) -> Result<ExitStatus, LaunchError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(LaunchError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(LaunchError::Signals)?;

    // Watching starts before tcpdump does: no close can be missed.
    let mut closed_files = ClosedFiles::watch(&plan.spool.active())?;
    let ticker = Ticker::bind().await?;
    let progress = Progress::new(plan.spool.clone(), watch_for(plan));
    let answers = Answers::shared();

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
    metrics.tcpdump_started();
    let pid = child.id();
    let (listening_tx, listening_rx) = oneshot::channel();
    let stderr_logger = child.stderr.take().map(|stderr| {
        tokio::spawn(log_stderr(
            stderr,
            listening_tx,
            metrics.clone(),
            answers.clone(),
        ))
    });

    // Fused: once it has answered (or tcpdump's stderr closed without the
    // line), it is never polled again.
    let mut listening_rx = listening_rx.fuse();
    let mut every_second = tokio::time::interval(spool::tick::TICK_INTERVAL);
    every_second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ask_stats = plan.stats_interval.map(|every| {
        let mut timer = tokio::time::interval(every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    });
    let mut capturing = CaptureSide::new(plan, pid, ticker, progress, answers, &metrics);
    let mut state = Lifecycle::Starting;

    let status = loop {
        if let Some(status) = state.exit_status() {
            break status;
        }
        let deadline = state.deadline();
        tokio::select! {
            status = child.wait() => state = state.on_exit(status.map_err(LaunchError::Wait)?),
            heard = &mut listening_rx, if state.awaits_listening() => {
                if heard.is_ok() {
                    state = state.on_listening();
                }
            }
            _ = every_second.tick(), if state.ticks() => capturing.every_second(state.watches_for_stalls()),
            _ = next_tick(&mut ask_stats), if state.asks_for_stats() => send(&child, Signal::SIGUSR1),
            closed = closed_files.next() => capturing.closed(closed),
            _ = terminate.recv() => state = stop_requested(state, &child, "SIGTERM"),
            _ = interrupt.recv() => state = stop_requested(state, &child, "SIGINT"),
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                let (next, effect) = state.on_deadline(Instant::now());
                carry_out(effect, &child, None);
                state = next;
            }
        }
    };
    if let Some(logger) = stderr_logger {
        finish_logging(logger).await;
    }
    log_exit(status);
    let last = hand_over_all(&plan.spool, &metrics, Some(&mut capturing.ledger))?;
    if last.failed > 0 {
        error!(
            failed = last.failed,
            "some captures could not be handed over; they stay in active/ for the next start"
        );
    }
    Ok(status)
}

/// What capturing does once a second and at each closed file: the tick,
/// the stall watch, the hand-over and the capture-side budget.
struct CaptureSide<'a> {
    plan: &'a Plan,
    pid: Option<u32>,
    ticker: Ticker,
    progress: Progress,
    seconds: u64,
    /// Closed captures held back because tcpdump may still be writing them
    /// (see [`hand_over_unless_open`]); tried again every second.
    held: Vec<String>,
    /// tcpdump's answers to SIGUSR1, as its stderr reader saw them.
    answers: SharedAnswers,
    /// The drop counts each capture handed over carries.
    ledger: DropLedger,
    metrics: &'a Metrics,
}

impl<'a> CaptureSide<'a> {
    fn new(
        plan: &'a Plan,
        pid: Option<u32>,
        ticker: Ticker,
        progress: Progress,
        answers: SharedAnswers,
        metrics: &'a Metrics,
    ) -> Self {
        Self {
            plan,
            pid,
            ticker,
            progress,
            seconds: 0,
            held: Vec::new(),
            ledger: DropLedger::new(answers.clone()),
            answers,
            metrics,
        }
    }

    /// `listening`: tcpdump has said so, and its silence is a stall.
    fn every_second(&mut self, listening: bool) {
        let plan = self.plan;
        self.ticker.tick();
        let heard = match self.answers.lock() {
            Ok(mut answers) => answers.take_heard(),
            Err(poisoned) => poisoned.into_inner().take_heard(),
        };
        let watching = match plan.capture_mode {
            // Growth is a sign of life only where the tick reaches tcpdump.
            CaptureMode::PerPacket => listening && plan.ticks_reach_capture,
            CaptureMode::Buffered => listening,
        };
        self.progress.observe(watching, heard);
        self.metrics
            .stalled
            .set(i64::from(self.progress.is_stalled()));
        self.seconds += 1;
        if self.seconds.is_multiple_of(BUDGET_EVERY_TICKS) {
            budget::enforce(&plan.spool, plan.max_spool_bytes, self.metrics);
        }
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            self.held = hand_over_unless_open(
                plan,
                self.pid,
                held,
                &mut self.progress,
                &mut self.ledger,
                self.metrics,
            );
        }
    }

    fn closed(&mut self, closed: Closed) {
        let plan = self.plan;
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
        names.append(&mut self.held);
        self.held = hand_over_unless_open(
            plan,
            self.pid,
            names,
            &mut self.progress,
            &mut self.ledger,
            self.metrics,
        );
        budget::enforce(&plan.spool, plan.max_spool_bytes, self.metrics);
    }
}

/// SIGTERM or SIGINT reached the launcher.
fn stop_requested(state: Lifecycle, child: &Child, received: &'static str) -> Lifecycle {
    let (next, effect) = state.on_stop_request(Instant::now());
    carry_out(effect, child, Some(received));
    next
}

/// Does what a transition asks for; `received` names the signal that
/// caused it, if one did.
fn carry_out(effect: Effect, child: &Child, received: Option<&'static str>) {
    match effect {
        Effect::Nothing => {}
        Effect::Drain => {
            info!(signal = received, drain = ?BLOCK_DRAIN, "stopping tcpdump once the kernel has handed over what it captured");
        }
        Effect::Terminate => send(child, Signal::SIGTERM),
        Effect::Kill(KillCause::SecondRequest) => {
            warn!(signal = received, "second signal: killing tcpdump now");
            send(child, Signal::SIGKILL);
        }
        Effect::Kill(KillCause::GraceExpired) => {
            warn!(grace = ?STOP_GRACE, "tcpdump did not stop in time; sending SIGKILL");
            send(child, Signal::SIGKILL);
        }
    }
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
    ledger: &mut DropLedger,
    metrics: &Metrics,
) -> Vec<String> {
    crate::handover::sort_in_capture_order(&mut names);
    names.dedup();
    let writing = MayBeWriting::of(plan, pid);
    let mut held = Vec::new();
    for name in names {
        let name = name.as_str();
        match &writing {
            // An open file's own close will come.
            MayBeWriting::Known(open) if open.contains(&plan.spool.active().join(name)) => {
                continue;
            }
            // A guess is tried again.
            MayBeWriting::Guessed(Some(newest)) if *newest == plan.spool.active().join(name) => {
                held.push(name.to_owned());
                continue;
            }
            _ => {}
        }
        match hand_over_closed_file(&plan.spool, name, metrics, Some(&mut *ledger)) {
            Ok(Some(bytes)) => progress.handed_over(bytes),
            Ok(None) => {}
            Err(e) => {
                error!(error = %e, "could not hand over a closed capture; it is handed over when capture stops")
            }
        }
    }
    held
}

/// Which files tcpdump may still be writing, and how that is known.
enum MayBeWriting {
    /// From its descriptor table (or none: it has exited).
    Known(Vec<PathBuf>),
    /// Its table is unreadable: the newest capture in `active/`, if any.
    Guessed(Option<PathBuf>),
}

impl MayBeWriting {
    fn of(plan: &Plan, pid: Option<u32>) -> Self {
        match pid.map(closed::open_files) {
            Some(Some(open)) => MayBeWriting::Known(open),
            Some(None) => MayBeWriting::Guessed(
                plan.spool
                    .active_captures()
                    .unwrap_or_default()
                    .pop()
                    .map(|newest| newest.path),
            ),
            None => MayBeWriting::Known(Vec::new()),
        }
    }
}

/// The stall watch's sign of life for the plan's capture mode.
fn watch_for(plan: &Plan) -> Watch {
    match (plan.capture_mode, plan.stats_interval) {
        (CaptureMode::Buffered, Some(asked_every)) => Watch::Counters {
            asked_every,
            rotate: plan.rotate,
        },
        // The plan refuses buffered mode without counters.
        _ => Watch::Growth,
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

/// The next tick of the timer that asks tcpdump for its counters; never,
/// when it is not asked.
async fn next_tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// tcpdump's stderr, line by line, as log events, and its counters into
/// the metrics. Reports when tcpdump says it is listening: its signal
/// handlers are installed by then. Reads in chunks into a
/// [`LineSplitter`], so memory stays bounded whatever tcpdump writes (`-v`
/// rewrites a progress line in place, with `\r`).
async fn log_stderr(
    mut stderr: ChildStderr,
    listening: oneshot::Sender<()>,
    metrics: Arc<Metrics>,
    answers: SharedAnswers,
) {
    let mut listening = Some(listening);
    let mut splitter = LineSplitter::default();
    let mut chunk = [0u8; 4096];
    let mut reports = ReportReader::default();
    let mut accumulated = Accumulated::default();
    let mut log_line = |text: &str| {
        if text.starts_with(TCPDUMP_LISTENING)
            && let Some(tx) = listening.take()
        {
            let _ = tx.send(());
        }
        let Some(report) = reports.line(text) else {
            log_tcpdump_line(text);
            return;
        };
        let increase = accumulated.observe(report);
        metrics.counted(increase);
        match answers.lock() {
            Ok(mut answers) => answers.add(increase),
            Err(poisoned) => poisoned.into_inner().add(increase),
        }
        if text.starts_with("tcpdump: ") {
            // An answer to SIGUSR1, every few seconds: the metrics carry
            // it; only new kernel drops are worth a line in the log.
            if increase.dropped_by_kernel > 0 {
                warn!(
                    target: "tcpdump",
                    dropped = increase.dropped_by_kernel,
                    total = report.dropped_by_kernel,
                    "tcpdump: packets dropped by kernel since the last count (raise --buffer-kib, shorten --snaplen or narrow the filter)"
                );
            } else {
                tracing::debug!(target: "tcpdump", "{text}");
            }
        } else {
            log_tcpdump_line(text);
        }
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
