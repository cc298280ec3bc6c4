//! What a ledger run will do: its length, seed, traffic and faults, resolved
//! from the command line before anything starts.

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

/// One kind of fault the run can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum)]
pub enum FaultKind {
    /// The uploader SIGKILLed (about half the time while a multipart upload
    /// is in progress) and started again.
    UploaderKill,
    /// garage stopped, then started again on the same data: connections
    /// are refused meanwhile.
    GarageRestart,
    /// The veth link to garage's network namespace drops every packet:
    /// timeouts, not refusals.
    Partition,
    /// The proxy reads requests and never answers.
    Hang,
    /// The proxy resets the connection in the middle of a request body.
    Reset,
    /// The proxy holds each request for a while before passing it on.
    Delay,
    /// The proxy passes request bodies at a low rate for a few seconds.
    Throttle,
    /// The proxy answers 503 SlowDown.
    Slowdown,
    /// The proxy flips one byte of each checksummed request body.
    Flip,
    /// S3 down and the spool on a small tmpfs with a small budget: the
    /// oldest captures are dropped, counted, and nothing dies of ENOSPC.
    DiskFull,
    /// Thousands of synthetic captures renamed into `ready/` at once.
    Burst,
    /// The launcher's tcpdump SIGKILLed; the launcher is started again.
    TcpdumpKill,
    /// tcpdump SIGSTOPped for longer than the launcher's stall limit.
    TcpdumpStop,
    /// A large capture behind a per-connection limit too low to send it
    /// within a minute.
    SlowLink,
}

impl FaultKind {
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    pub fn all() -> Vec<FaultKind> {
        FaultKind::value_variants().to_vec()
    }

    /// How often a kind is drawn in a mixed run after the first round: the
    /// uploader is killed most (the issue asks for ≥ 20 kills in 30
    /// minutes), the long phases least.
    pub fn weight(self) -> u32 {
        match self {
            FaultKind::UploaderKill => 12,
            FaultKind::DiskFull | FaultKind::Burst | FaultKind::SlowLink => 1,
            FaultKind::TcpdumpKill | FaultKind::TcpdumpStop => 2,
            _ => 3,
        }
    }
}

/// Parses `--faults`: `mixed`, or kinds separated by commas.
pub fn parse_faults(text: &str) -> Result<Vec<FaultKind>, String> {
    if text.trim() == "mixed" {
        return Ok(FaultKind::all());
    }
    let mut kinds = Vec::new();
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let kind = FaultKind::from_str(word, false).map_err(|_| {
            let known: Vec<String> = FaultKind::all().into_iter().map(FaultKind::name).collect();
            format!(
                "unknown fault {word:?}: use `mixed` or some of {}",
                known.join(", ")
            )
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() {
        return Err("no fault named: use `mixed` or a list of kinds".to_owned());
    }
    Ok(kinds)
}

/// A resolved ledger run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// How long faults are injected (traffic runs as long).
    pub duration: Duration,
    pub seed: u64,
    /// Numbered datagrams a second, outside the high-rate phase.
    pub rate: u64,
    pub faults: Vec<FaultKind>,
    /// Length of the high-rate phase (0: none).
    pub high_rate_secs: u64,
    /// Datagrams a second in the high-rate phase.
    pub high_rate: u64,
    /// Synthetic captures the burst fault renames into `ready/` at once.
    pub burst_files: u32,
    pub launcher: PathBuf,
    pub uploader: PathBuf,
    pub garage: PathBuf,
    /// The repository (for scripts/garage-local).
    pub repo: PathBuf,
    /// Keep the work folder (logs, garage data) after the run.
    pub keep: bool,
}

/// Settings of the pipeline under test, chosen so that a run of minutes
/// sees many rotations, multipart uploads and retries.
pub mod settings {
    use std::time::Duration;

    /// tcpdump -G: one file a second, as in the high-rate test.
    pub const ROTATE_SECONDS: u64 = 1;
    /// A kernel buffer large enough for a stopped tcpdump (13–16 s) at the
    /// high rate, so that the stall itself drops nothing.
    pub const BUFFER_KIB: u64 = 128 * 1024;
    /// Files over 1 MiB go up as multipart uploads of 5 MiB parts (S3's
    /// smallest), so that kills land in the middle of them.
    pub const MULTIPART_THRESHOLD_MB: u64 = 1;
    pub const PART_SIZE_MB: u64 = 5;
    /// The spool's tmpfs and budget outside the disk-full fault: larger
    /// than any backlog an outage of seconds builds.
    pub const SPOOL_TMPFS_MB: u64 = 2048;
    pub const SPOOL_BUDGET_MB: u64 = 1536;
    /// The uploader's budget during the disk-full fault.
    pub const DISK_FULL_BUDGET_MB: u64 = 4;
    /// Room the tmpfs keeps above what it holds when disk-full starts.
    pub const DISK_FULL_HEADROOM_MB: u64 = 12;
    /// A request silent this long fails (the uploader's default is 60 s).
    /// Up to about 1.1 MiB of a body waits in socket buffers after the
    /// uploader has handed it over (its send buffer and the proxy's
    /// receive buffer); at the slow link's rate that drains in 9 s, so
    /// the timeout must be longer or every attempt would time out.
    pub const READ_TIMEOUT_MS: u64 = 15_000;
    pub const RETRY_MAX_MS: u64 = 2_000;
    pub const PERMANENT_RETRY_MS: u64 = 2_000;
    pub const RESCAN_MS: u64 = 1_000;
    /// The burst's uploader watches with a queue of this many events (the
    /// kernel's default is 16,384): a burst of hundreds overflows it.
    pub const BURST_QUEUE_EVENTS: u32 = 16;
    /// How long the uploader may drain after SIGTERM at the end.
    pub const DRAIN_TIMEOUT_SECONDS: u64 = 120;
    /// The launcher reports a stall after 10 s (launcher/src/stall.rs).
    pub const STALL_AFTER: Duration = Duration::from_secs(10);
    /// The slow link's per-connection rate, and the capture sent over it:
    /// 24 MiB would need 3 minutes on one connection.
    pub const SLOW_LINK_BYTES_PER_SECOND: u64 = 128 * 1024;
    pub const SLOW_LINK_CAPTURE_BYTES: usize = 24 * 1024 * 1024;
    /// The throttle fault's per-connection rate.
    pub const THROTTLE_BYTES_PER_SECOND: u64 = 256 * 1024;
    /// UDP payload of the high-rate phase: with headers about 330 bytes a
    /// record, so 1-s captures of 6–7 MB go up in two parts.
    pub const HIGH_RATE_PAYLOAD: usize = 256;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_as_mixed_or_a_list() {
        assert_eq!(parse_faults("mixed").unwrap(), FaultKind::all());
        assert_eq!(
            parse_faults("uploader-kill, flip,uploader-kill").unwrap(),
            [FaultKind::UploaderKill, FaultKind::Flip]
        );
        let error = parse_faults("flip,meteor").unwrap_err();
        assert!(
            error.contains("meteor") && error.contains("disk-full"),
            "{error}"
        );
        assert!(parse_faults(",").is_err());
    }
}
