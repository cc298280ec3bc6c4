//! One ledger run, start to verdict: set up the rig, inject faults for the
//! scenario's duration (the high-rate phase among them), stop the traffic,
//! stop the launcher as Kubernetes does, let the uploader drain, take the
//! bucket's census and judge it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::census::{self, Expected};
use super::rig::Rig;
use super::scenario::{FaultKind, Scenario, settings};
use super::summary::{Outcome, Report};
use super::{pipeline, summary};

/// Runs the scenario; the report says whether every invariant held.
/// `interrupted` ends the fault phase early (the run is then a failure).
pub fn run(scenario: &Scenario, interrupted: &Arc<AtomicBool>) -> anyhow::Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let mut rig = Rig::start(scenario.clone())?;
    eprintln!(
        "chaos: seed {}, {} s of faults ({}), work folder {}",
        scenario.seed,
        scenario.duration.as_secs(),
        fault_names(&scenario.faults),
        rig.work.display()
    );
    let faulted = inject_for_the_duration(&mut rig, interrupted);
    let outcome = finish(&mut rig, &runtime, started, faulted.err(), interrupted);
    if outcome.as_ref().is_ok_and(|r| !r.passed()) || outcome.is_err() {
        let kept = rig.keep_work();
        eprintln!("chaos: logs and garage data kept in {}", kept.display());
    }
    outcome
}

fn fault_names(kinds: &[FaultKind]) -> String {
    if kinds.len() == FaultKind::all().len() {
        return "mixed".to_owned();
    }
    kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
}

/// The order of faults: in a mixed run every kind once first (shuffled),
/// then drawn by weight.
fn next_fault(rig: &mut Rig, round: &mut Vec<FaultKind>) -> FaultKind {
    if let Some(kind) = round.pop() {
        return kind;
    }
    let kinds = rig.scenario.faults.clone();
    let total: u32 = kinds.iter().map(|k| k.weight()).sum();
    let mut pick = rig.rng.u32(0..total.max(1));
    for kind in &kinds {
        if pick < kind.weight() {
            return *kind;
        }
        pick -= kind.weight();
    }
    kinds[0]
}

fn inject_for_the_duration(rig: &mut Rig, interrupted: &AtomicBool) -> anyhow::Result<()> {
    let start = Instant::now();
    let duration = rig.scenario.duration;
    // The high-rate phase starts a quarter into the run.
    let high_rate_from = duration / 4;
    let high_rate_for = Duration::from_secs(rig.scenario.high_rate_secs);
    let mut high_rate_began: Option<Instant> = None;
    let mut round = rig.scenario.faults.clone();
    rig.rng.shuffle(&mut round);
    let mut update_phase = |rig: &mut Rig| {
        let elapsed = start.elapsed();
        let due = elapsed >= high_rate_from && !high_rate_for.is_zero();
        match high_rate_began {
            None if due => {
                rig.high_rate = true;
                rig.restore_traffic();
                high_rate_began = Some(Instant::now());
                eprintln!("chaos: +{}s high-rate phase begins", elapsed.as_secs());
            }
            Some(began) if rig.high_rate && began.elapsed() >= high_rate_for => {
                rig.high_rate = false;
                rig.restore_traffic();
                rig.faults.high_rate_seconds = began.elapsed().as_secs();
                eprintln!("chaos: +{}s high-rate phase ends", elapsed.as_secs());
            }
            _ => {}
        }
    };
    while start.elapsed() < duration && !interrupted.load(Ordering::SeqCst) {
        let gap = Duration::from_millis(rig.rng.u64(1_000..4_000));
        let gap_end = Instant::now() + gap;
        while Instant::now() < gap_end {
            update_phase(rig);
            std::thread::sleep(Duration::from_millis(100));
        }
        let kind = next_fault(rig, &mut round);
        eprintln!("chaos: +{}s {}", start.elapsed().as_secs(), kind.name());
        rig.inject(kind)?;
        update_phase(rig);
        if !rig.launcher.is_running() {
            rig.faults
                .problems
                .push(format!("the launcher exited during {}", kind.name()));
            rig.launcher.start()?;
        }
        if !rig.uploader.is_running() {
            rig.faults
                .problems
                .push(format!("the uploader exited during {}", kind.name()));
            rig.uploader.start(None)?;
        }
    }
    // A phase cut short by the end still ends.
    if rig.high_rate {
        rig.high_rate = false;
        if let Some(began) = high_rate_began {
            rig.faults.high_rate_seconds = began.elapsed().as_secs();
        }
        rig.restore_traffic();
    }
    Ok(())
}

/// Stops everything the Kubernetes way, drains, counts, judges.
fn finish(
    rig: &mut Rig,
    runtime: &tokio::runtime::Runtime,
    started: Instant,
    fault_error: Option<anyhow::Error>,
    interrupted: &AtomicBool,
) -> anyhow::Result<Report> {
    let mut problems = std::mem::take(&mut rig.faults.problems);
    if let Some(e) = fault_error {
        problems.push(format!("injecting faults failed: {e:#}"));
    }
    if interrupted.load(Ordering::SeqCst) {
        problems.push("interrupted before the scenario's end".to_owned());
    }
    // Whatever a failed fault left behind is undone first.
    rig.proxy.set_mode(super::fault_proxy::Mode::Pass);
    if !rig.garage.is_running() {
        rig.garage.start_garage()?;
    }
    let _ = rig.garage.restore_link();
    let _ = rig.tmpfs.resize(settings::SPOOL_TMPFS_MB);
    let sent = rig.traffic.stop();
    std::thread::sleep(Duration::from_secs(2));
    if rig.launcher.is_running() {
        rig.launcher.stop()?;
    }
    if !rig.uploader.is_running() {
        rig.uploader.start(None)?;
    }
    // Drained when the spool is empty; a run of 30 minutes may leave a
    // backlog of minutes behind its last faults.
    let drained = rig.wait_spool_empty(Duration::from_secs(900));
    if !drained {
        problems.push("the spool was not empty 900 s after the traffic stopped".to_owned());
    }
    let uploader_exit = rig
        .uploader
        .stop(Duration::from_secs(settings::DRAIN_TIMEOUT_SECONDS + 30))?;
    if !uploader_exit.success() {
        problems.push(format!("the uploader's drain ended with {uploader_exit}"));
    }
    let leftovers = rig.spool_leftovers();
    let runs: Vec<(SystemTime, SystemTime)> = rig
        .launcher
        .runs
        .iter()
        .map(|r| (r.started, r.ended.unwrap_or_else(SystemTime::now)))
        .collect();
    let expected = Expected {
        sent,
        runs,
        synthetic: rig.synthetic.clone(),
    };
    let client = crate::garage::reading_client(
        &rig.garage.endpoint(),
        rig.garage.access_key(),
        rig.garage.secret_key(),
    );
    let bucket = rig.garage.bucket().to_owned();
    let census = runtime.block_on(census::take(&client, &bucket, &expected))?;

    let uploader_log = std::fs::read_to_string(rig.uploader.log()).unwrap_or_default();
    let mut drops = summary::budget_drops(
        &uploader_log,
        spool::logging::counted::UPLOADER_BUDGET_DROPPED,
        "uploader",
    );
    let mut tcpdump = Vec::new();
    let mut killed_kernel_drops = 0;
    for run in &rig.launcher.runs {
        let log = std::fs::read_to_string(&run.log).unwrap_or_default();
        drops.extend(summary::budget_drops(
            &log,
            spool::logging::counted::LAUNCHER_BUDGET_DROPPED,
            "launcher",
        ));
        let counts = pipeline::tcpdump_counts(&log);
        match run.end {
            Some(pipeline::RunEnd::Stopped) => tcpdump.push(counts),
            // Counts asked for just before the kill: its kernel drops only
            // (packets it captured after them are not counted).
            _ => {
                killed_kernel_drops += counts.map_or(0, |c| c.dropped_by_kernel);
                tcpdump.push(None);
            }
        }
    }
    let outcome = Outcome {
        killed_kernel_drops,
        sent,
        send_errors: rig.traffic.send_errors(),
        slices: rig.traffic.slices(),
        census,
        tcpdump,
        drops,
        leftovers,
        problems,
        watch_overflows: uploader_log
            .lines()
            .filter(|l| l.contains(spool::logging::counted::UPLOADER_WATCH_OVERFLOW))
            .count(),
    };
    Ok(Report::new(
        &rig.scenario,
        started.elapsed(),
        &rig.faults,
        rig.proxy.counts(),
        rig.uploader.starts,
        &outcome,
    ))
}
