//! What the user typed: flags and their environment variables.

use std::path::PathBuf;

use clap::Parser;

/// Runs tcpdump with gap-free `-G` rotation into the spool and hands each
/// finished capture to the uploader by an atomic rename into `ready/`.
///
/// Extra tcpdump options go after `--` or in TCPDUMP_ARGS; options that
/// write or read files, run commands or change identity are refused.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Spool folder shared with the uploader (holds active/, ready/, state/).
    #[arg(long, env = "SPOOL_DIR", default_value = "/spool")]
    pub spool_dir: PathBuf,

    /// Interface to capture on; `any` captures on every interface of the
    /// node (with hostNetwork). [default: any]
    #[arg(long, env = "CAPTURE_INTERFACE")]
    pub interface: Option<String>,

    /// Seconds per capture file (tcpdump -G). Each file is in ready/ at
    /// most about 2 s after its period ends, whatever the filter: the
    /// launcher's one-a-second tick gives tcpdump a packet to rotate on.
    #[arg(long, env = "ROTATE_SECONDS", default_value_t = 60)]
    pub rotate_seconds: u64,

    /// Largest capture file in millions of bytes (tcpdump -C); a busy period
    /// is split into numbered files. 0: no limit (no -C), one file per
    /// period whatever its size; tcpdump then saves one lseek per packet
    /// (-C asks for the file's position after each), the part of its CPU
    /// above plain `tcpdump -G` in buffered mode.
    #[arg(long, env = "MAX_FILE_MB", default_value_t = 100)]
    pub max_file_mb: u64,

    /// Bytes kept of each packet (tcpdump -s); e.g. 128 keeps headers only.
    /// [default: tcpdump's, 262144]
    #[arg(long, env = "SNAPLEN")]
    pub snaplen: Option<u32>,

    /// Kernel capture buffer in KiB (tcpdump -B); raise it if the closing
    /// log reports packets dropped by kernel. [default: tcpdump's]
    #[arg(long, env = "BUFFER_KIB")]
    pub buffer_kib: Option<u32>,

    /// BPF filter expression, e.g. `port 53 or tcp[tcpflags] & tcp-rst != 0`.
    /// [default: every packet]
    #[arg(long, env = "CAPTURE_FILTER")]
    pub filter: Option<String>,

    /// Also capture the uploader's own connections to S3.
    ///
    /// By default the filter leaves out the uploader's packets: TCP to the
    /// S3 endpoint's port (see --s3-endpoint-url) marked with its DSCP (1,
    /// "lower effort"; TOS byte 0x04), appended to --filter as `(<filter>)
    /// and not (...)`; otherwise each capture would hold the upload of the
    /// one before and captures would grow without end. Other programs'
    /// DSCP-1 packets are captured. Turn this on to debug the uploader
    /// itself, e.g. `--capture-own-uploads`.
    #[arg(long, env = "CAPTURE_OWN_UPLOADS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub capture_own_uploads: bool,

    /// The uploader's S3 endpoint (the same variable as the uploader's; both
    /// containers read it from the one ConfigMap).
    ///
    /// Only its port is used: the uploader's marked packets are left out on
    /// TCP to that port alone, e.g. `http://127.0.0.1:3900` → 3900. A URL
    /// without a port means 80 (http) or 443 (https). [default: AWS S3, 443]
    #[arg(long, env = "S3_ENDPOINT_URL", value_name = "URL")]
    pub s3_endpoint_url: Option<String>,

    /// Also capture the node's cloud credential endpoints. DANGEROUS: the
    /// captures then hold plaintext credentials.
    ///
    /// By default the filter leaves out every packet to or from instance
    /// metadata (169.254.169.254, fd00:ec2::254), the EKS Pod Identity
    /// agent (169.254.170.23, fd00:ec2::23) and ECS (169.254.170.2),
    /// whatever --filter says: their plain-HTTP answers carry the node
    /// role's and every pod role's keys, which anyone reading the bucket
    /// could use. Turn on only to debug those services, on a bucket no one
    /// else reads, e.g. `--capture-credential-endpoints`.
    #[arg(long, env = "CAPTURE_CREDENTIAL_ENDPOINTS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub capture_credential_endpoints: bool,

    /// Path of the tcpdump binary. [default: tcpdump from PATH]
    #[arg(long = "tcpdump", env = "TCPDUMP_PATH")]
    pub tcpdump: Option<PathBuf>,

    /// Largest size of the spool in MiB before the capture side drops the
    /// oldest waiting captures itself. The uploader keeps the spool under
    /// this budget; the launcher steps in only at 10 % above it (the
    /// uploader is down or cannot keep up), so the pod is never evicted for
    /// outgrowing its volume. Same variable as the uploader's.
    #[arg(long, env = "MAX_SPOOL_MB", default_value_t = 2048)]
    pub max_spool_mb: u64,

    /// Address of the launcher's metrics port: `/metrics` (Prometheus) and
    /// `/healthz` (the `--probe` verdict).
    ///
    /// With hostNetwork this port is opened on the node; keep it apart
    /// from the uploader's METRICS_ADDR (both containers read the one
    /// ConfigMap, so this variable has a name of its own), e.g.
    /// `127.0.0.1:9478` to keep it off the node's network.
    #[arg(
        long,
        env = "LAUNCHER_METRICS_ADDR",
        default_value = "0.0.0.0:9478",
        value_name = "ADDR"
    )]
    pub metrics_addr: std::net::SocketAddr,

    /// How often, in milliseconds, the launcher asks tcpdump for its
    /// packet counters (SIGUSR1), for the metrics, each capture's drop
    /// counts and, in buffered mode, the stall watch; 0 asks never (the
    /// counters then move only at exit; buffered mode refuses it).
    #[arg(
        long,
        env = "STATS_INTERVAL_MS",
        default_value_t = 5_000,
        value_name = "MS"
    )]
    pub stats_interval_ms: u64,

    /// How tcpdump writes packets to the capture file: `buffered` (its
    /// stdio buffer, written when full and at each rotation; cheapest) or
    /// `per-packet` (tcpdump -U: each packet written as it is captured).
    ///
    /// `buffered` costs what plain `tcpdump -G` costs; a tcpdump killed
    /// with SIGKILL loses what its buffer held (one filesystem block of
    /// the spool, 4096 bytes on ext4 and xfs). Its stall watch reads
    /// tcpdump's counters, so it needs --stats-interval-ms between 1 and
    /// 10000. `per-packet` loses nothing on SIGKILL but costs about 7
    /// times the CPU (docs/benchmarks.md).
    #[arg(
        long,
        env = "CAPTURE_MODE",
        value_enum,
        default_value_t = CaptureMode::Buffered,
        value_name = "MODE"
    )]
    pub capture_mode: CaptureMode,

    /// Liveness probe: exit 0 if tcpdump was seen capturing in the last
    /// 20 seconds (the heartbeat in the spool), 1 otherwise, and capture
    /// nothing. For the capture container's `livenessProbe`, e.g.
    /// `launcher --probe`.
    #[arg(long)]
    pub probe: bool,

    /// Extra tcpdump options, split as a shell splits words, e.g. `-n -p`.
    /// Screened like the options after `--`.
    #[arg(long, env = "TCPDUMP_ARGS")]
    pub tcpdump_args: Option<String>,

    /// Validate everything, print the exact tcpdump command line, and exit
    /// without capturing.
    #[arg(long)]
    pub check: bool,

    /// Extra tcpdump options (after `--`), e.g. `-- -n -p -Q in`.
    #[arg(last = true, value_name = "TCPDUMP_OPTION")]
    pub tcpdump_options: Vec<String>,
}

/// How tcpdump writes packets to the capture file (`--capture-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CaptureMode {
    /// tcpdump's own stdio buffer, written when full and at each rotation.
    Buffered,
    /// tcpdump -U: each packet written to the file as it is captured.
    PerPacket,
}
