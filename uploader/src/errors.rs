//! Typed errors of the uploader library. Messages are lowercase, subject
//! first, without a trailing period; the binary adds context at its edge.

use std::path::PathBuf;

// `upload.rs` still imports it from here; kept until its in-flight changes
// are merged.
pub use crate::failure::UploadError;

/// The configuration cannot work; found before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Key(#[from] bucket::capture_keys::KeyError),
    #[error(
        "key template uses {{instance_id}} but the instance metadata service did not answer: {reason}"
    )]
    InstanceId { reason: String },
    #[error(
        "S3_EXPECTED_BUCKET_OWNER must be the 12-digit id of the AWS account that owns the bucket (aws sts get-caller-identity --query Account), got {value:?}"
    )]
    BucketOwner { value: String },
    #[error(transparent)]
    HttpClient(#[from] s3_http::HttpClientError),
    #[error("--part-size-mb {0} is below S3's minimum part size of 5 MB")]
    PartSizeTooSmall(u64),
    #[error("--{flag} must be at least 1")]
    Zero { flag: &'static str },
    #[error(
        "--upload-mode pinned-with-index ships the flow index of every capture, but --flow-index is false: set FLOW_INDEX=true, or UPLOAD_MODE=pinned"
    )]
    RingIndexWithoutIndex,
    #[error("--sse-kms-key-id needs --sse aws:kms")]
    KmsKeyWithoutKms,
    #[error("no AWS region found (set AWS_REGION, or region in the AWS profile)")]
    NoRegion,
}

/// The spool cannot be used; names the path and the fix.
#[derive(Debug, thiserror::Error)]
#[error("spool folder {path} {problem}; {fix}")]
pub struct SpoolError {
    pub path: PathBuf,
    pub problem: String,
    pub fix: &'static str,
}

/// `--check` or the startup probe found a problem with bucket or credentials.
#[derive(Debug, thiserror::Error)]
#[error("bucket {bucket:?} is not usable: {error}; {hint}")]
pub struct ProbeError {
    pub bucket: String,
    pub error: UploadError,
    pub hint: String,
}

/// An exec probe (`uploader probe ready|live`) did not get a 200.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("{uri} answered {status}: {body}")]
    Answered {
        uri: String,
        status: u16,
        body: String,
    },
    #[error(
        "{uri} did not answer ({reason}): is the uploader running in this container, with the same METRICS_ADDR?"
    )]
    Unreachable { uri: String, reason: String },
}

/// No credentials could be resolved; names what was tried and the fix.
#[derive(Debug, thiserror::Error)]
#[error("no usable AWS credentials: {reason}; {fix}")]
pub struct CredentialsError {
    pub reason: String,
    pub fix: &'static str,
}

/// What `run` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("cannot listen on {addr} for the admin port (/metrics, /healthz, /readyz): {source}; {}", bind_hint(.source))]
    MetricsBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
    #[error("{} capture(s) left in the spool: {}", .0.len(), .0.join(", "))]
    LeftBehind(Vec<String>),
    #[error(
        "pinned mode cannot list the pins under {prefix}: {error}; grant s3:ListBucket for that prefix and s3:GetObject on it (scripts/iam-setup --pinned), or set UPLOAD_MODE=all"
    )]
    PinsUnreadable {
        prefix: String,
        error: crate::failure::UploadError,
    },
}

/// What to do when the admin address cannot be bound.
fn bind_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "another process already holds this port (with hostNetwork, any process on the node); stop it, or set METRICS_ADDR (--metrics-addr) to a free port, e.g. 0.0.0.0:9091, and the probes' port with it"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "no interface of this host has that address; set METRICS_ADDR (--metrics-addr) to one of its addresses, or 0.0.0.0"
        }
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need CAP_NET_BIND_SERVICE; set METRICS_ADDR (--metrics-addr) to a port above 1023"
        }
        _ => "check METRICS_ADDR (--metrics-addr)",
    }
}

/// A bad key template is a configuration error wherever it is found.
impl From<bucket::capture_keys::KeyError> for RunError {
    fn from(e: bucket::capture_keys::KeyError) -> Self {
        Self::Config(e.into())
    }
}
