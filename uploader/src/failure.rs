//! What went wrong, as far as retrying, readiness and the metrics care:
//! [`FailureKind`] and [`classify_code`] (the bucket contract's table of S3
//! codes, shared with `captures`), the [`UploadError`] that carries a kind,
//! [`classify`], which turns whatever a step failed with into a kind, and
//! [`hint`], what a person can do about it.
//! [`FailureKind::is_transient`] is the one rule for what retries fast; the
//! schedule is `retry.rs`. Both kinds keep the file: nothing is ever given
//! up on while the uploader runs.
//!
//! - **Transient** (retried fast within a turn, capped exponential backoff
//!   with jitter, per file while other files keep moving; see `retry.rs`): the store could not be
//!   reached or answered "not now" — connection refused or reset, timeouts,
//!   DNS, 5xx, `SlowDown`/429, `RequestTimeout` — or the body arrived
//!   corrupted (`BadDigest` on AWS, `InvalidDigest` on garage, or our own
//!   comparison of the returned checksum).
//! - **Permanent** (logged once per change with bucket, key and a hint,
//!   retried slowly, readiness false): only a person can fix it —
//!   `AccessDenied`, `NoSuchBucket`, `InvalidAccessKeyId`,
//!   `SignatureDoesNotMatch`, missing credentials, and any other 4xx the store
//!   refuses the request with.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
macro_rules! access_denied_permissions {
    () => {
        "grant the uploader's role s3:PutObject and the multipart actions on this bucket and key prefix (manifests/s3-tcpdump-policy.json), and check the bucket policy and KMS key policy"
    };
}
/// What to do about a missing permission.
pub const ACCESS_DENIED_PERMISSIONS: &str = access_denied_permissions!();
const ACCESS_DENIED_HINT: &str = concat!(
    access_denied_permissions!(),
    "; with S3_EXPECTED_BUCKET_OWNER set, also check that this account still owns the bucket (S3 answers another account's bucket with AccessDenied too)"
);

pub use bucket::failure::{FailureKind, classify_code};

/// What a person can do about a permanent failure of `kind`.
pub fn hint(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::AccessDenied => ACCESS_DENIED_HINT,
        FailureKind::NoSuchBucket => {
            "create the bucket or fix --bucket/S3_BUCKET (and AWS_REGION, --endpoint-url)"
        }
        FailureKind::InvalidCredentials => {
            "the access key is unknown or no credentials were found: check the IRSA/Pod Identity binding of the service account, or AWS_ACCESS_KEY_ID"
        }
        FailureKind::SignatureMismatch => {
            "the secret key does not match the access key, or the clock is far off: check AWS_SECRET_ACCESS_KEY and time sync"
        }
        FailureKind::Connection | FailureKind::Timeout => {
            "the store cannot be reached: check --endpoint-url, AWS_REGION, DNS and egress to S3"
        }
        FailureKind::LocalIo => {
            "the uploader cannot read the capture: check that it runs in the spool's group and files are group-readable"
        }
        _ => "see the error detail",
    }
}

/// Turns an SDK error into an [`UploadError`] with its kind.
pub fn classify<E>(operation: &str, err: &SdkError<E, HttpResponse>) -> UploadError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = format!("{operation}: {}", describe(err));
    let kind = match err {
        SdkError::TimeoutError(_) => FailureKind::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => FailureKind::Timeout,
        SdkError::DispatchFailure(d) if d.is_user() => FailureKind::LocalIo,
        SdkError::DispatchFailure(_) => {
            // Identity resolution failures surface as dispatch failures too.
            if detail.contains("credentials") || detail.contains("identity") {
                FailureKind::InvalidCredentials
            } else {
                FailureKind::Connection
            }
        }
        SdkError::ConstructionFailure(_) => {
            if detail.contains("credentials") || detail.contains("identity") {
                FailureKind::InvalidCredentials
            } else {
                FailureKind::Refused
            }
        }
        SdkError::ResponseError(_) => FailureKind::Connection,
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let (code, message) = (service.err().code(), service.err().message());
            match (code, message) {
                // garage says AccessDenied for both; its message tells which.
                (Some("AccessDenied"), Some(m)) if m.contains("Invalid signature") => {
                    FailureKind::SignatureMismatch
                }
                (Some("AccessDenied"), Some(m)) if m.contains("No such key") => {
                    FailureKind::InvalidCredentials
                }
                _ => classify_code(code, Some(status)),
            }
        }
        _ => FailureKind::Connection,
    };
    UploadError::new(kind, detail)
}

/// One line: the store's code, message and status for a service error, the
/// chain of causes otherwise (without the SDK's debug dump).
fn describe<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(service) = err {
        return format!(
            "{} {} (HTTP {})",
            service.err().code().unwrap_or("unknown error"),
            service.err().message().unwrap_or(""),
            service.raw().status().as_u16()
        );
    }
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// One S3 or local step of shipping a file failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct UploadError {
    pub kind: FailureKind,
    pub detail: String,
}

impl UploadError {
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}
