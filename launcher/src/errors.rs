//! Errors of the capture side, each saying what was wrong and how to fix it.

use std::path::PathBuf;

/// A tcpdump option the pass-through screen refused.
#[derive(Debug, thiserror::Error)]
pub enum PassThroughError {
    #[error("tcpdump option {option} is refused: {reason}")]
    Refused {
        option: String,
        reason: &'static str,
    },
    #[error(
        "tcpdump option {option} conflicts with the launcher flag {flag}: set only one of them"
    )]
    Conflict { option: String, flag: &'static str },
    #[error(
        "tcpdump option {option} is not on the pass-through list; see the pass-through rules in docs/reference.md for the options that are"
    )]
    Unknown { option: String },
    #[error("tcpdump option {option} is ambiguous: spell the long option out in full")]
    Ambiguous { option: String },
    #[error("tcpdump option {option} needs a value")]
    MissingValue { option: String },
    #[error("tcpdump option {option} takes no value")]
    UnexpectedValue { option: String },
}

/// Why the launcher could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    PassThrough(#[from] PassThroughError),
    #[error("TCPDUMP_ARGS cannot be split into words: {0} (check its quotes)")]
    TcpdumpArgsQuoting(#[from] shell_words::ParseError),
    #[error(
        "--rotate-seconds must be at least 1 (got 0): tcpdump needs a period to rotate files on"
    )]
    ZeroRotation,
    #[error(
        "--max-spool-mb must be at least 1 (got 0); it is the spool's budget in MiB, below the volume's sizeLimit"
    )]
    ZeroSpoolBudget,
    #[error(
        "--capture-mode buffered needs --stats-interval-ms (STATS_INTERVAL_MS) between 1 and {max_ms} (got {got_ms}): its stall watch reads tcpdump's answers to SIGUSR1, and the liveness probe allows 20 s without one; set STATS_INTERVAL_MS=5000, or CAPTURE_MODE=per-packet"
    )]
    BufferedNeedsStats { got_ms: u64, max_ms: u64 },
    #[error(
        "cannot watch {path} for files tcpdump closes ({source}); raise fs.inotify.max_user_instances or max_user_watches on the node"
    )]
    Watch {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot open the tick socket on 127.0.0.1 ({0}); the loopback interface must be up in the pod's network namespace"
    )]
    Tick(std::io::Error),
    #[error(
        "a filter was given both in --filter (CAPTURE_FILTER) and as pass-through words {words:?}: give it in one place"
    )]
    FilterTwice { words: Vec<String> },
    #[error(
        "S3_ENDPOINT_URL (--s3-endpoint-url) {url:?} is not an endpoint URL: {why}; give the uploader's endpoint, e.g. http://127.0.0.1:3900, or leave it unset for AWS S3"
    )]
    S3EndpointUrl { url: String, why: String },
    #[error("tcpdump not found: {0} (install tcpdump, or point --tcpdump / TCPDUMP_PATH at it)")]
    TcpdumpMissing(String),
    #[error("tcpdump at {0} is not an executable file (check the path and its permissions)")]
    TcpdumpNotExecutable(PathBuf),
    #[error("spool folder {0} does not exist (create it, or mount the shared volume there)")]
    SpoolMissing(PathBuf),
    #[error("spool path {0} is not a folder (point --spool-dir / SPOOL_DIR at a folder)")]
    SpoolNotFolder(PathBuf),
    #[error(
        "spool folder {path} is not writable by uid {uid} (give this user or its group write access, e.g. the pod's fsGroup)"
    )]
    SpoolNotWritable { path: PathBuf, uid: u32 },
    #[error(
        "folder {path} (mode {mode:o}) does not let the {user:?} user through, and tcpdump started as root drops to that user before it writes: allow it (e.g. chmod o+x {path}) or run the launcher as a non-root user with file capabilities on tcpdump"
    )]
    SpoolUnreachable {
        path: PathBuf,
        user: String,
        mode: u32,
    },
    #[error(transparent)]
    Folder(#[from] spool::FolderError),
    #[error("spool folder {path}: {source}")]
    SpoolIo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "tcpdump refused the capture settings (interface {interface:?}, filter {filter:?}): {message}"
    )]
    TcpdumpRefused {
        interface: String,
        filter: String,
        message: String,
    },
    #[error("could not start tcpdump at {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("handing over {path}: {source}")]
    HandOver {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} for the metrics port (/metrics, /healthz): {source}; {}", bind_hint(.source))]
    MetricsBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("waiting for tcpdump: {0}")]
    Wait(std::io::Error),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

impl LaunchError {
    /// True when the settings are wrong (flags, environment, TCPDUMP_ARGS,
    /// the tcpdump path, or an interface or filter tcpdump refused): fixing
    /// them is the cure, so the exit code is 2 as for the uploader's
    /// configuration errors. Everything else (the spool, tcpdump's process,
    /// signals) is a failed run: 1.
    pub fn is_configuration(&self) -> bool {
        match self {
            Self::PassThrough(_)
            | Self::TcpdumpArgsQuoting(_)
            | Self::ZeroRotation
            | Self::ZeroSpoolBudget
            | Self::BufferedNeedsStats { .. }
            | Self::FilterTwice { .. }
            | Self::S3EndpointUrl { .. }
            | Self::TcpdumpMissing(_)
            | Self::TcpdumpNotExecutable(_)
            | Self::TcpdumpRefused { .. }
            | Self::MetricsBind { .. } => true,
            Self::SpoolMissing(_)
            | Self::SpoolNotFolder(_)
            | Self::SpoolNotWritable { .. }
            | Self::SpoolUnreachable { .. }
            | Self::Folder(_)
            | Self::SpoolIo { .. }
            | Self::Spawn { .. }
            | Self::HandOver { .. }
            | Self::Wait(_)
            | Self::Watch { .. }
            | Self::Tick(_)
            | Self::Signals(_) => false,
        }
    }
}

/// How to fix a metrics address that cannot be bound.
fn bind_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "another process already holds this port (with hostNetwork, any process on the node, the uploader's METRICS_ADDR included); stop it, or set LAUNCHER_METRICS_ADDR (--metrics-addr) to a free port, e.g. 0.0.0.0:9479"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "no interface of this host has that address; set LAUNCHER_METRICS_ADDR (--metrics-addr) to one of its addresses, or 0.0.0.0"
        }
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need CAP_NET_BIND_SERVICE; set LAUNCHER_METRICS_ADDR (--metrics-addr) to a port above 1023"
        }
        _ => "check LAUNCHER_METRICS_ADDR (--metrics-addr)",
    }
}
