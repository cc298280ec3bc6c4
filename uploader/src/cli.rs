//! What the user typed: the command line and its environment variables.
//! `config.rs` turns this into what the uploader will do.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// The admin address setting, read by the running uploader and by its
/// probes alike.
const METRICS_ADDR_ENV: &str = "METRICS_ADDR";
const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9090";

/// Ships finished packet captures from the spool to S3, each with a verified
/// SHA-256, deleting a capture locally only after S3 confirmed it.
///
/// Credentials come from the AWS chain (AWS_* environment, profile, IRSA web
/// identity, EKS Pod Identity), the node's role only with ALLOW_NODE_ROLE;
/// the region from AWS_REGION, the profile or instance metadata.
/// LOG_FORMAT=json switches logs to JSON; RUST_LOG sets the level.
///
/// `uploader probe ready` and `uploader probe live` ask the admin port of the
/// uploader running beside them (METRICS_ADDR) and exit 0 or 1: exec probes
/// for a loopback-only admin port.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Spool folder shared with the capture container.
    ///
    /// Captures are taken from <SPOOL_DIR>/ready/; resume records are kept in
    /// <SPOOL_DIR>/state/. The spool must exist; its folders are created if
    /// missing (the sidecar usually starts first). Default: /spool.
    #[arg(long, env = "SPOOL_DIR", default_value = "/spool", value_name = "DIR")]
    pub spool_dir: PathBuf,

    /// S3 bucket the captures are uploaded to (required).
    ///
    /// Example: --bucket my-captures.
    #[arg(long, env = "S3_BUCKET", value_name = "NAME")]
    pub bucket: String,

    /// AWS account id (12 digits) that must own the bucket.
    ///
    /// Sent with every S3 request as ExpectedBucketOwner: S3 refuses the
    /// request (403 AccessDenied) when another account owns a bucket of that
    /// name, e.g. one re-created by someone else after yours was deleted.
    /// scripts/deploy fills it in, and the manifests do not render without
    /// it; unset, the uploader warns at start (fine for a local store).
    /// Example: 111122223333.
    #[arg(long, env = "S3_EXPECTED_BUCKET_OWNER", value_name = "ACCOUNT_ID")]
    pub expected_bucket_owner: Option<String>,

    /// Object key template.
    ///
    /// Placeholders: {node} (NODE_NAME, else the host name), {pod} (POD_NAME),
    /// {namespace} (POD_NAMESPACE), {cluster} (CLUSTER_NAME), {instance_id}
    /// (instance metadata, IMDSv2), {yyyy} {mm} {dd} {hh} {mi} (the capture's
    /// UTC start time, not the upload time) and {file} (required). One of
    /// {node}, {instance_id} or {pod} is required too, so that two nodes never
    /// write the same key. An unknown placeholder is refused at start.
    #[arg(
        long,
        env = "S3_KEY_TEMPLATE",
        default_value = crate::keys::DEFAULT_TEMPLATE,
        value_name = "TEMPLATE"
    )]
    pub key_template: String,

    /// Endpoint of an S3-compatible store instead of AWS S3.
    ///
    /// Example: --endpoint-url http://127.0.0.1:3900. Default: AWS S3 of the
    /// region.
    #[arg(long, env = "S3_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Address buckets by path (https://host/bucket/key) rather than by host.
    ///
    /// Most S3-compatible stores need it. Default: false.
    #[arg(long, env = "S3_FORCE_PATH_STYLE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub force_path_style: bool,

    /// Let the node's IAM role (instance metadata) supply credentials when
    /// nothing else does.
    ///
    /// Off by default: a pod whose IRSA or Pod Identity binding is missing
    /// would otherwise upload with the node's role instead of the write-only
    /// policy. Default: false.
    #[arg(long, env = "ALLOW_NODE_ROLE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub allow_node_role: bool,

    /// Maximum number of upload requests in flight.
    ///
    /// Shared by whole files and the parts of multipart uploads; 8 kept a
    /// local store busy in bench/upload at under 40 MiB of memory. Default: 8.
    #[arg(
        long,
        env = "UPLOAD_CONCURRENCY",
        default_value_t = 8,
        value_name = "N"
    )]
    pub concurrency: usize,

    /// Write a flow index next to every capture (`captures find` reads it).
    ///
    /// Built in the same read that hashes the capture: one record per flow
    /// (addresses, ports, times, packets and bytes each way, symptoms), as
    /// gzip JSON lines under `<prefix>index/node=…/date=…/hour=…/`. Costs
    /// one more small PUT per capture. E.g. `--flow-index false`.
    #[arg(long, env = "FLOW_INDEX", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub flow_index: bool,

    /// Files larger than this go up as multipart uploads, in MiB.
    ///
    /// Smaller files go up in one PutObject. Default: 64.
    #[arg(
        long,
        env = "MULTIPART_THRESHOLD_MB",
        default_value_t = 64,
        value_name = "MIB"
    )]
    pub multipart_threshold_mb: u64,

    /// Part size of multipart uploads, in MiB.
    ///
    /// S3's minimum is 5; smaller values are refused. Default: 16.
    #[arg(long, env = "PART_SIZE_MB", default_value_t = 16, value_name = "MIB")]
    pub part_size_mb: u64,

    /// Spool budget in MiB (active and ready together).
    ///
    /// When the spool grows past it (S3 unreachable for a long time), the
    /// oldest ready captures not being uploaded are deleted, logged and
    /// counted, so that Kubernetes does not evict the pod for outgrowing its
    /// emptyDir. Keep it below the emptyDir's sizeLimit. Default: 2048.
    #[arg(long, env = "MAX_SPOOL_MB", default_value_t = 2048, value_name = "MIB")]
    pub max_spool_mb: u64,

    /// What is shipped: `all` (every capture, as it is ready) or `pinned`
    /// (the flight recorder).
    ///
    /// In `pinned` mode the spool is a ring: captures stay on the node up to
    /// --max-spool-mb, the oldest expire (counted as expired, not dropped),
    /// and only those overlapping a pin (`captures pin`, or an alert through
    /// `captures receive-alerts`) that selects this node are shipped, with
    /// their flow index, tagged `pinned=true`. Needs s3:ListBucket on the
    /// `pins/` prefix, s3:GetObject on `pins/*` and s3:PutObjectTagging
    /// (scripts/iam-setup --pinned). `pinned-with-index` also ships every
    /// capture's flow index as soon as it is ready (one small PUT a
    /// capture), so that `captures find` searches all time and `captures
    /// fetch` names the captures never shipped. Default: all.
    #[arg(
        long,
        env = "UPLOAD_MODE",
        value_enum,
        default_value_t = UploadMode::All,
        value_name = "MODE"
    )]
    pub upload_mode: UploadMode,

    /// In pinned mode, how often the pins are listed, in seconds.
    ///
    /// One list request per poll, and one read per new pin: at 10, 360
    /// lists per node-hour. Default: 10.
    #[arg(
        long,
        env = "PIN_POLL_SECONDS",
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    pub pin_poll_seconds: u64,

    /// S3 storage class of the objects.
    ///
    /// Example: STANDARD_IA, INTELLIGENT_TIERING. Default: the bucket's
    /// (STANDARD).
    #[arg(long, env = "S3_STORAGE_CLASS", value_name = "CLASS")]
    pub storage_class: Option<String>,

    /// Server-side encryption requested for each object.
    ///
    /// Default: none requested (the bucket's default encryption applies).
    #[arg(long, env = "S3_SSE", value_enum, value_name = "MODE")]
    pub sse: Option<SseArg>,

    /// KMS key for --sse aws:kms.
    ///
    /// Example: arn:aws:kms:eu-west-1:111122223333:key/…; default: the
    /// account's aws/s3 key.
    #[arg(long, env = "S3_SSE_KMS_KEY_ID", value_name = "KEY")]
    pub sse_kms_key_id: Option<String>,

    /// Address of the /metrics, /healthz and /readyz endpoints.
    ///
    /// Default: 0.0.0.0:9090.
    #[arg(
        long,
        env = METRICS_ADDR_ENV,
        default_value = DEFAULT_METRICS_ADDR,
        value_name = "ADDR"
    )]
    pub metrics_addr: SocketAddr,

    /// On SIGTERM, keep uploading what is ready for at most this long.
    ///
    /// The drain ends early when ready/ and active/ are both empty; what is
    /// left is logged. Keep it below the pod's terminationGracePeriodSeconds.
    /// Default: 60.
    #[arg(
        long,
        env = "DRAIN_TIMEOUT_SECONDS",
        default_value_t = 60,
        value_name = "SECONDS"
    )]
    pub drain_timeout_seconds: u64,

    /// Upload what is in ready/ now, then exit.
    ///
    /// Exits 0 when everything went, 1 listing what is left otherwise;
    /// transient failures are retried a few times only.
    #[arg(long, conflicts_with = "check")]
    pub once: bool,

    /// Validate the configuration and probe the bucket, then exit.
    ///
    /// Resolves credentials from the chain (naming their source, never the
    /// credentials) and asks the bucket about a multipart upload that does
    /// not exist (needs no read permission).
    /// Exits 0 when the uploader could work, non-zero with the reason.
    #[arg(long)]
    pub check: bool,

    /// Cap of the transient retry backoff, in milliseconds (tests).
    #[arg(
        long,
        env = "UPLOADER_RETRY_MAX_MS",
        default_value_t = 30_000,
        hide = true
    )]
    pub retry_max_ms: u64,

    /// Delay between attempts while a failure is permanent, in ms (tests).
    #[arg(
        long,
        env = "UPLOADER_PERMANENT_RETRY_MS",
        default_value_t = 60_000,
        hide = true
    )]
    pub permanent_retry_ms: u64,

    /// Full rescan of ready/ and budget check interval, in ms (tests).
    #[arg(
        long,
        env = "UPLOADER_RESCAN_MS",
        default_value_t = 10_000,
        hide = true
    )]
    pub rescan_ms: u64,

    /// Longest silence of a request, in ms: nothing sent and nothing
    /// received (tests shorten it).
    #[arg(
        long,
        env = "UPLOADER_READ_TIMEOUT_MS",
        default_value_t = 60_000,
        hide = true
    )]
    pub read_timeout_ms: u64,
}

/// `uploader probe ready|live`: an exec probe for a pod whose admin port
/// listens on loopback only, where the kubelet's HTTP probes cannot reach it.
#[derive(Debug, Parser)]
#[command(name = "uploader probe", bin_name = "uploader probe", version)]
pub struct ProbeCli {
    /// What to ask: `ready` (/readyz) or `live` (/healthz).
    ///
    /// Exits 0 on a 200 answer, 1 otherwise, printing the answer or why
    /// there was none.
    #[arg(value_enum)]
    pub route: crate::admin::Route,

    /// The admin address of the uploader to ask; the running uploader's own
    /// setting (0.0.0.0 means this host's loopback).
    #[arg(
        long,
        env = METRICS_ADDR_ENV,
        default_value = DEFAULT_METRICS_ADDR,
        value_name = "ADDR"
    )]
    pub metrics_addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SseArg {
    #[value(name = "AES256")]
    Aes256,
    #[value(name = "aws:kms")]
    AwsKms,
}

/// What the uploader ships (`--upload-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UploadMode {
    /// Every capture, as it is ready.
    #[value(name = "all")]
    All,
    /// Only captures overlapping a pin; the rest expire on the node.
    #[value(name = "pinned")]
    Pinned,
    /// As `pinned`, and every capture's flow index is shipped as soon as
    /// the capture is ready, so that `captures find` searches all time and
    /// `captures fetch` names the captures never shipped.
    #[value(name = "pinned-with-index")]
    PinnedWithIndex,
}

impl UploadMode {
    /// Whether captures wait for a pin (the flight recorder).
    pub fn is_pinned(self) -> bool {
        self != Self::All
    }

    /// Whether the ring's captures have their flow index shipped.
    pub fn ships_ring_indexes(self) -> bool {
        self == Self::PinnedWithIndex
    }
}
