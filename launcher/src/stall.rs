//! Noticing a tcpdump that stopped writing (hung, stopped, its interface
//! gone), and the heartbeat the capture container's liveness probe reads.
//!
//! With the tick on the wire every second and `-U` writing each packet as
//! it comes, a healthy tcpdump's output grows at least once a second. The
//! launcher measures it once a second: while it grows, the heartbeat file
//! in the spool is touched; when it has not grown for [`STALL_AFTER`], the
//! stall is logged (again every [`STALL_REPEAT`]) and the heartbeat goes
//! stale, so `launcher --probe` fails and Kubernetes restarts the container.

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

/// How far tcpdump's output has come.
#[derive(Debug)]
pub struct Progress {
    spool: SpoolLayout,
    /// Bytes handed over so far plus bytes now in `active/`.
    written: u64,
    handed_bytes: u64,
    last_growth: Instant,
    last_report: Option<Instant>,
}

impl Progress {
    pub fn new(spool: SpoolLayout) -> Self {
        let progress = Self {
            spool,
            written: 0,
            handed_bytes: 0,
            last_growth: Instant::now(),
            last_report: None,
        };
        progress.beat();
        progress
    }

    /// Counts bytes that left `active/` for `ready/`.
    pub fn handed_over(&mut self, bytes: u64) {
        self.handed_bytes += bytes;
    }

    /// Measures once; touches the heartbeat while tcpdump writes, logs a
    /// stall when it has stopped. `watching` is false while tcpdump starts.
    pub fn observe(&mut self, watching: bool) {
        let active: u64 = self
            .spool
            .active_captures()
            .map(|files| files.iter().map(|f| f.size).sum())
            .unwrap_or(0);
        let written = self.handed_bytes + active;
        let now = Instant::now();
        if written != self.written || !watching {
            if self.last_report.take().is_some() {
                tracing::info!(
                    stalled_for = ?now - self.last_growth,
                    "{WRITING_AGAIN_LOG}"
                );
            }
            self.written = written;
            self.last_growth = now;
            self.beat();
            return;
        }
        let silent = now - self.last_growth;
        let due = self.last_report.is_none_or(|at| now - at >= STALL_REPEAT);
        if silent >= STALL_AFTER && due {
            tracing::error!(silent_seconds = silent.as_secs(), "{STALLED_LOG}");
            self.last_report = Some(now);
        }
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
            "stalled: tcpdump was last seen writing {} s ago (limit {} s)",
            age.as_secs(),
            HEARTBEAT_STALE_AFTER.as_secs()
        ));
    }
    Ok(age)
}
