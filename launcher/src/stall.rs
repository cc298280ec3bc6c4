//! Noticing a tcpdump that stopped writing (hung, stopped, its interface
//! gone), and the heartbeat the capture container's liveness probe reads.
//!
//! Once a second the launcher looks for a sign of life; while there is
//! one, the heartbeat file in the spool is touched; when there has been
//! none for [`STALL_AFTER`] (longer in buffered mode, see below), the
//! stall is logged (again every [`STALL_REPEAT`]) and the heartbeat goes
//! stale, so `launcher --probe` fails and Kubernetes restarts the container.
//!
//! The sign of life depends on the capture mode ([`Watch`]):
//! - per-packet (`-U`): with the tick on the wire every second and each
//!   packet written as it comes, a healthy tcpdump's output grows at least
//!   once a second; the sign is growth.
//! - buffered: the file grows only when tcpdump's stdio buffer fills or
//!   at rotation, so growth says nothing on a quiet node. The sign is an
//!   answer to SIGUSR1 ([`crate::stats`]) whose captured counter moved, or
//!   whose received counter did not (nothing to capture), or a closed
//!   file. A tcpdump that stops answering is stalled; so is one whose
//!   counters move but that closes no file for a rotation period plus
//!   [`ROTATION_MARGIN`] (it takes packets but writes no capture).

use std::fs::File;
use std::time::{Duration, SystemTime};

use spool::SpoolLayout;
use tokio::time::Instant;

/// No growth for this long is a stall.
pub const STALL_AFTER: Duration = Duration::from_secs(10);
/// A stall goes on being logged this often.
const STALL_REPEAT: Duration = Duration::from_secs(30);
/// What the launcher logs when tcpdump has stopped writing (the fault
/// ledger counts it).
pub use spool::logging::counted::TCPDUMP_STALLED as STALLED_LOG;
/// What the launcher logs when a stalled tcpdump writes again.
pub use spool::logging::counted::TCPDUMP_WRITING_AGAIN as WRITING_AGAIN_LOG;
/// The probe fails when the heartbeat is older than this.
pub const HEARTBEAT_STALE_AFTER: Duration = Duration::from_secs(20);
/// In buffered mode, how much later than a rotation period a file must
/// close while tcpdump captures packets (the tick makes it close within
/// about 2 s).
pub const ROTATION_MARGIN: Duration = Duration::from_secs(10);

/// What counts as a sign of life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Per-packet mode: the output grows.
    Growth,
    /// Buffered mode: tcpdump's answers to SIGUSR1, asked this often, and
    /// a file closed at least every `rotate` (plus [`ROTATION_MARGIN`]).
    Counters {
        asked_every: Duration,
        rotate: Duration,
    },
}

/// What tcpdump's answers said since the launcher last looked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heard {
    /// Answers read.
    pub answers: u64,
    /// How much the captured and received counters grew over them.
    pub captured: u64,
    pub received: u64,
}

impl Heard {
    /// Adds one answer's increase.
    pub fn add(&mut self, increase: crate::stats::Increase) {
        self.answers += 1;
        self.captured += increase.captured;
        self.received += increase.received;
    }
}

/// How far tcpdump's output has come.
#[derive(Debug)]
pub struct Progress {
    spool: SpoolLayout,
    watch: Watch,
    /// Bytes handed over so far plus bytes now in `active/`.
    written: u64,
    handed_bytes: u64,
    /// Files handed over so far, and when the last one was.
    handed_files: u64,
    last_close: Instant,
    /// Whether tcpdump's captured counter moved since the last close.
    captured_since_close: bool,
    handed_files_seen: u64,
    last_growth: Instant,
    last_report: Option<Instant>,
}

impl Progress {
    pub fn new(spool: SpoolLayout, watch: Watch) -> Self {
        let now = Instant::now();
        let progress = Self {
            spool,
            watch,
            written: 0,
            handed_bytes: 0,
            handed_files: 0,
            last_close: now,
            captured_since_close: false,
            handed_files_seen: 0,
            last_growth: now,
            last_report: None,
        };
        progress.beat();
        progress
    }

    /// Counts bytes that left `active/` for `ready/`.
    pub fn handed_over(&mut self, bytes: u64) {
        self.handed_bytes += bytes;
        self.handed_files += 1;
    }

    /// Measures once; touches the heartbeat while tcpdump shows a sign of
    /// life, logs a stall when it has shown none for too long. `watching`
    /// is false while tcpdump starts; `heard` is what its answers to
    /// SIGUSR1 said since the last call (used in buffered mode).
    pub fn observe(&mut self, watching: bool, heard: Heard) {
        self.observe_at(Instant::now(), watching, heard);
    }

    fn observe_at(&mut self, now: Instant, watching: bool, heard: Heard) {
        let (alive, silent_limit, why) = match self.watch {
            Watch::Growth => (self.grew(), STALL_AFTER, "its capture file has not grown"),
            Watch::Counters {
                asked_every,
                rotate,
            } => {
                let closed = self.handed_files != self.handed_files_seen;
                self.handed_files_seen = self.handed_files;
                if closed {
                    self.last_close = now;
                    self.captured_since_close = false;
                }
                self.captured_since_close |= heard.captured > 0;
                let answered = heard.answers > 0 && (heard.captured > 0 || heard.received == 0);
                let overdue =
                    self.captured_since_close && now - self.last_close > rotate + ROTATION_MARGIN;
                let limit = STALL_AFTER.max(asked_every * 2 + Duration::from_secs(1));
                if overdue {
                    (
                        false,
                        limit,
                        "it captures packets but has closed no file for a rotation period and more",
                    )
                } else {
                    (
                        closed || answered,
                        limit,
                        "it has not answered SIGUSR1 with packets taken",
                    )
                }
            }
        };
        if alive || !watching {
            if self.last_report.take().is_some() {
                tracing::info!(
                    stalled_for = ?now - self.last_growth,
                    "{WRITING_AGAIN_LOG}"
                );
            }
            self.last_growth = now;
            if !watching {
                self.last_close = now;
                self.captured_since_close = false;
            }
            self.beat();
            return;
        }
        let silent = now - self.last_growth;
        let due = self.last_report.is_none_or(|at| now - at >= STALL_REPEAT);
        if silent >= silent_limit && due {
            tracing::error!(silent_seconds = silent.as_secs(), why, "{STALLED_LOG}");
            self.last_report = Some(now);
        }
    }

    /// Whether the output grew since the last look (per-packet mode).
    fn grew(&mut self) -> bool {
        let active: u64 = self
            .spool
            .active_captures()
            .map(|files| files.iter().map(|f| f.size).sum())
            .unwrap_or(0);
        let written = self.handed_bytes + active;
        let grew = written != self.written;
        self.written = written;
        grew
    }

    /// Whether tcpdump is stalled now (reported, and not writing again).
    pub fn is_stalled(&self) -> bool {
        self.last_report.is_some()
    }

    fn beat(&self) {
        let path = self.spool.heartbeat();
        let touched = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()));
        if let Err(e) = touched {
            tracing::warn!(path = %path.display(), error = %e, "cannot touch the heartbeat");
        }
    }
}

/// The liveness probe's verdict on a spool's heartbeat.
pub fn probe(spool: &SpoolLayout) -> Result<Duration, String> {
    let path = spool.heartbeat();
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map_err(|e| {
            format!(
                "no heartbeat at {} ({e}): the launcher is not running on this spool",
                path.display()
            )
        })?;
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    if age > HEARTBEAT_STALE_AFTER {
        return Err(format!(
            "stalled: tcpdump was last seen capturing {} s ago (limit {} s)",
            age.as_secs(),
            HEARTBEAT_STALE_AFTER.as_secs()
        ));
    }
    Ok(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(5);
    const ROTATE: Duration = Duration::from_secs(60);

    fn buffered() -> (tempfile::TempDir, Progress) {
        let dir = tempfile::tempdir().unwrap();
        let progress = Progress::new(
            SpoolLayout::new(dir.path()),
            Watch::Counters {
                asked_every: EVERY,
                rotate: ROTATE,
            },
        );
        (dir, progress)
    }

    fn answer(captured: u64, received: u64) -> Heard {
        Heard {
            answers: 1,
            captured,
            received,
        }
    }

    /// Runs `seconds` one-second looks from `start`; `heard(s)` is what
    /// the answers said before look `s`, `closes(s)` whether a file was
    /// handed over then. Returns whether a stall was reported at the end.
    fn run(
        progress: &mut Progress,
        start: Instant,
        seconds: u64,
        heard: impl Fn(u64) -> Heard,
        closes: impl Fn(u64) -> bool,
    ) -> bool {
        for s in 1..=seconds {
            if closes(s) {
                progress.handed_over(4096);
            }
            progress.observe_at(start + Duration::from_secs(s), true, heard(s));
        }
        progress.is_stalled()
    }

    fn every(n: u64, then: Heard) -> impl Fn(u64) -> Heard {
        move |s| if s % n == 0 { then } else { Heard::default() }
    }

    #[test]
    fn buffered_tcpdump_that_answers_with_packets_taken_is_alive_though_its_file_does_not_grow() {
        let (_dir, mut progress) = buffered();
        let start = Instant::now();
        let stalled = run(&mut progress, start, 300, every(5, answer(40, 40)), |s| {
            s % 60 == 0
        });
        assert!(!stalled);
    }

    #[test]
    fn buffered_tcpdump_on_a_quiet_interface_is_alive_while_it_answers() {
        let (_dir, mut progress) = buffered();
        let start = Instant::now();
        // No packet to capture: no file closes either.
        let stalled = run(&mut progress, start, 300, every(5, answer(0, 0)), |_| false);
        assert!(!stalled);
    }

    #[test]
    fn buffered_tcpdump_that_stops_answering_is_stalled_and_alive_again_when_it_answers() {
        let (_dir, mut progress) = buffered();
        let start = Instant::now();
        assert!(!run(
            &mut progress,
            start,
            20,
            every(5, answer(1, 1)),
            |_| false
        ));
        // Silent for twice the interval and a second: stalled.
        let later = start + Duration::from_secs(20);
        assert!(!run(
            &mut progress,
            later,
            10,
            |_| Heard::default(),
            |_| false
        ));
        assert!(run(
            &mut progress,
            later + Duration::from_secs(10),
            2,
            |_| Heard::default(),
            |_| false
        ));
        progress.observe_at(later + Duration::from_secs(13), true, answer(3, 3));
        assert!(!progress.is_stalled());
    }

    #[test]
    fn buffered_tcpdump_that_answers_but_takes_no_packet_is_stalled() {
        let (_dir, mut progress) = buffered();
        let start = Instant::now();
        let stalled = run(&mut progress, start, 30, every(5, answer(0, 500)), |_| {
            false
        });
        assert!(stalled);
    }

    #[test]
    fn buffered_tcpdump_that_captures_but_closes_no_file_past_the_period_is_stalled() {
        let (_dir, mut progress) = buffered();
        let start = Instant::now();
        let period_and_margin = (ROTATE + ROTATION_MARGIN).as_secs() - 1;
        assert!(!run(
            &mut progress,
            start,
            period_and_margin,
            every(5, answer(10, 10)),
            |_| false
        ));
        let later = start + Duration::from_secs(period_and_margin);
        assert!(run(
            &mut progress,
            later,
            15,
            every(5, answer(10, 10)),
            |_| false
        ));
        // A closed file is a sign of life again.
        progress.handed_over(4096);
        progress.observe_at(later + Duration::from_secs(16), true, Heard::default());
        assert!(!progress.is_stalled());
    }

    #[test]
    fn per_packet_tcpdump_whose_file_does_not_grow_is_stalled_whatever_it_answers() {
        let dir = tempfile::tempdir().unwrap();
        let mut progress = Progress::new(SpoolLayout::new(dir.path()), Watch::Growth);
        let start = Instant::now();
        let stalled = run(&mut progress, start, 11, every(1, answer(5, 5)), |_| false);
        assert!(stalled);
    }

    #[test]
    fn nothing_is_a_stall_while_tcpdump_starts() {
        let (_dir, mut progress) = buffered();
        let start = Instant::now();
        for s in 1..=60 {
            progress.observe_at(start + Duration::from_secs(s), false, Heard::default());
        }
        assert!(!progress.is_stalled());
    }
}
