//! What the launcher will do: the user's flags resolved and validated into
//! one plan, before anything starts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use spool::{SpoolLayout, TCPDUMP_FILE_PATTERN};

use crate::cli::{CaptureMode, Cli};
use crate::errors::LaunchError;
use crate::filter::{self, Exclusions};
use crate::passthrough::{self, OwnedFlags};

const DEFAULT_INTERFACE: &str = "any";
/// The capture side drops captures only this much above the uploader's
/// budget, so the two never race for the same file while both run.
const CAPTURE_SIDE_SLACK_PERCENT: u64 = 10;

/// A validated capture plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spool: SpoolLayout,
    pub tcpdump: PathBuf,
    pub interface: String,
    /// The filter tcpdump compiles: the user's, less the exclusions.
    pub filter: String,
    /// What the filter leaves out of the user's.
    pub exclusions: Exclusions,
    /// Above this many bytes the launcher drops the oldest ready captures.
    pub max_spool_bytes: u64,
    /// Whether the tick (sent on loopback) is seen by this capture: on
    /// `any` and on `lo`. Elsewhere rotation waits for traffic and the
    /// stall watch is off.
    pub ticks_reach_capture: bool,
    /// tcpdump's arguments, without the program name.
    pub tcpdump_args: Vec<String>,
    /// Arguments for a dry run that opens the interface and compiles the
    /// filter without capturing (`-d`).
    pub preflight_args: Vec<String>,
    pub check_only: bool,
    /// Where `/metrics` and `/healthz` are served.
    pub metrics_addr: std::net::SocketAddr,
    /// How often tcpdump is asked for its counters; `None`: never.
    pub stats_interval: Option<std::time::Duration>,
    /// How tcpdump writes packets (`-U` only in per-packet mode), and so
    /// how the stall watch knows it is alive.
    pub capture_mode: CaptureMode,
    /// The rotation period (tcpdump -G).
    pub rotate: std::time::Duration,
}

/// The longest --stats-interval-ms buffered mode accepts: its stall watch
/// needs an answer well within the probe's 20 s.
pub const BUFFERED_MAX_STATS_INTERVAL_MS: u64 = 10_000;

impl Plan {
    /// Resolves and validates the command line. Touches nothing on disk.
    pub fn from_cli(cli: Cli) -> Result<Self, LaunchError> {
        if cli.rotate_seconds == 0 {
            return Err(LaunchError::ZeroRotation);
        }
        if cli.max_spool_mb == 0 {
            return Err(LaunchError::ZeroSpoolBudget);
        }
        if cli.capture_mode == CaptureMode::Buffered
            && !(1..=BUFFERED_MAX_STATS_INTERVAL_MS).contains(&cli.stats_interval_ms)
        {
            return Err(LaunchError::BufferedNeedsStats {
                got_ms: cli.stats_interval_ms,
                max_ms: BUFFERED_MAX_STATS_INTERVAL_MS,
            });
        }
        if std::env::var_os("FLUSH_MS").is_some() {
            tracing::warn!(
                "FLUSH_MS is no longer used and is ignored: see --capture-mode (CAPTURE_MODE) for how tcpdump writes packets"
            );
        }

        let mut words = match &cli.tcpdump_args {
            Some(line) => shell_words::split(line)?,
            None => Vec::new(),
        };
        words.extend(cli.tcpdump_options.iter().cloned());
        let owned = OwnedFlags {
            interface: cli.interface.is_some(),
            snaplen: cli.snaplen.is_some(),
            buffer_kib: cli.buffer_kib.is_some(),
        };
        let screened = passthrough::screen(&words, owned)?;

        let filter = match (&cli.filter, screened.filter_words.is_empty()) {
            (Some(_), false) => {
                return Err(LaunchError::FilterTwice {
                    words: screened.filter_words,
                });
            }
            (Some(filter), true) => filter.clone(),
            (None, _) => screened.filter_words.join(" "),
        };
        let s3_port = filter::s3_port(cli.s3_endpoint_url.as_deref()).map_err(|why| {
            LaunchError::S3EndpointUrl {
                url: cli.s3_endpoint_url.clone().unwrap_or_default(),
                why,
            }
        })?;
        let exclusions = Exclusions {
            credential_endpoints: !cli.capture_credential_endpoints,
            own_uploads_to_port: (!cli.capture_own_uploads).then_some(s3_port),
        };
        let filter = filter::build(&filter, exclusions);
        let interface = cli
            .interface
            .or(screened.interface)
            .unwrap_or_else(|| DEFAULT_INTERFACE.to_owned());
        let snaplen = cli.snaplen.map(|s| s.to_string()).or(screened.snaplen);
        let buffer = cli
            .buffer_kib
            .map(|b| b.to_string())
            .or(screened.buffer_size);

        let mut capture_settings = vec!["-i".to_owned(), interface.clone()];
        if let Some(snaplen) = snaplen {
            capture_settings.extend(["-s".to_owned(), snaplen]);
        }
        if let Some(buffer) = buffer {
            capture_settings.extend(["-B".to_owned(), buffer]);
        }
        capture_settings.extend(screened.options);

        let spool = SpoolLayout::new(cli.spool_dir);
        let output = spool.active().join(TCPDUMP_FILE_PATTERN);
        let mut tcpdump_args = capture_settings.clone();
        // Per-packet (-U): every packet is written to the file as it is
        // captured, from tcpdump's own loop. Buffered: tcpdump's stdio
        // buffer is written when full and at each rotation (fclose). Either
        // way nothing ever signals into its stdio (a SIGUSR2 flush from a
        // signal handler tore records mid-write at high rates).
        if cli.capture_mode == CaptureMode::PerPacket {
            tcpdump_args.push("-U".to_owned());
        }
        tcpdump_args.extend([
            "-w".to_owned(),
            output.to_string_lossy().into_owned(),
            "-G".to_owned(),
            cli.rotate_seconds.to_string(),
        ]);
        // -C makes tcpdump ask where it is in the file (ftell: one lseek)
        // after every packet; without a size limit it does not.
        if cli.max_file_mb > 0 {
            tcpdump_args.extend(["-C".to_owned(), cli.max_file_mb.to_string()]);
        }
        let mut preflight_args = capture_settings;
        preflight_args.push("-d".to_owned());
        // The filter goes after `--` as one word: tcpdump compiles it and can
        // never read it as an option.
        for args in [&mut tcpdump_args, &mut preflight_args] {
            if !filter.is_empty() {
                args.extend(["--".to_owned(), filter.clone()]);
            }
        }

        let ticks_reach_capture = matches!(interface.as_str(), "any" | "lo");
        Ok(Self {
            spool,
            tcpdump: resolve_tcpdump(cli.tcpdump.as_deref())?,
            ticks_reach_capture,
            interface,
            filter,
            exclusions,
            max_spool_bytes: cli
                .max_spool_mb
                .saturating_mul(1024 * 1024)
                .saturating_mul(100 + CAPTURE_SIDE_SLACK_PERCENT)
                / 100,
            tcpdump_args,
            preflight_args,
            check_only: cli.check,
            metrics_addr: cli.metrics_addr,
            stats_interval: (cli.stats_interval_ms > 0)
                .then(|| std::time::Duration::from_millis(cli.stats_interval_ms)),
            capture_mode: cli.capture_mode,
            rotate: std::time::Duration::from_secs(cli.rotate_seconds),
        })
    }

    /// The command line, quoted as a shell would need it.
    pub fn command_line(&self) -> String {
        let mut words = vec![self.tcpdump.to_string_lossy().into_owned()];
        words.extend(self.tcpdump_args.iter().cloned());
        shell_words::join(words)
    }
}

/// Finds tcpdump: the given path, or the first `tcpdump` on PATH (plus the
/// sbin folders, which non-root PATHs often lack).
fn resolve_tcpdump(given: Option<&Path>) -> Result<PathBuf, LaunchError> {
    let candidate = match given {
        Some(path) => path.to_path_buf(),
        None => {
            let path_var = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path_var)
                .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
                .map(|dir| dir.join("tcpdump"))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    LaunchError::TcpdumpMissing("no tcpdump on PATH or in /usr/sbin".to_owned())
                })?
        }
    };
    let metadata = std::fs::metadata(&candidate)
        .map_err(|e| LaunchError::TcpdumpMissing(format!("{}: {e}", candidate.display())))?;
    if !metadata.is_file() || metadata.permissions().mode() & 0o111 == 0 {
        return Err(LaunchError::TcpdumpNotExecutable(candidate));
    }
    Ok(candidate)
}
