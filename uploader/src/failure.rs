//! What went wrong, as far as retrying, readiness and the metrics care:
//! [`FailureKind`], the [`UploadError`] that carries it, and [`classify`],
//! which turns whatever a step failed with into a kind.
//! [`FailureKind::is_transient`] is the one rule for what retries fast; the
//! schedule is `retry.rs`. Both kinds keep the file: nothing is ever given
//! up on while the uploader runs.
//!
//! - **Transient** (retried without limit, capped exponential backoff with
//!   jitter, per file while other files keep moving): the store could not be
//!   reached or answered "not now" — connection refused or reset, timeouts,
//!   DNS, 5xx, `SlowDown`/429, `RequestTimeout` — or the body arrived
//!   corrupted (`BadDigest` on AWS, `InvalidDigest` on garage, or our own
//!   comparison of the returned checksum).
//! - **Permanent** (logged once per change with bucket, key and a hint,
//!   retried slowly, readiness false): only a person can fix it —
//!   `AccessDenied`, `NoSuchBucket`, `InvalidAccessKeyId`,
//!   `SignatureDoesNotMatch`, missing credentials, and any other 4xx the store
//!   refuses the request with.

use std::fmt;

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

/// What went wrong, as far as retrying and the metrics care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Connection refused or reset, DNS, TLS: the store was not reached.
    Connection,
    /// Connect, read or attempt timeout.
    Timeout,
    /// 5xx from the store.
    Server,
    /// `SlowDown`, 429, 503 `RequestTimeout`: the store asked us to wait.
    Throttled,
    /// The store or our verification saw different bytes than we hashed.
    ChecksumMismatch,
    /// The multipart upload is unknown to the store (aborted or expired).
    NoSuchUpload,
    AccessDenied,
    NoSuchBucket,
    /// `InvalidAccessKeyId` or no credentials at all.
    InvalidCredentials,
    /// `SignatureDoesNotMatch`: wrong secret key or a clock far off.
    SignatureMismatch,
    /// Any other refusal of the request by the store.
    Refused,
    /// Reading the capture from the spool failed.
    LocalIo,
    /// The capture disappeared from `ready/` (dropped by the budget or by
    /// hand); nothing left to do.
    Gone,
}

impl FailureKind {
    /// The one retry rule: see the module documentation.
    pub fn is_transient(self) -> bool {
        match self {
            FailureKind::Connection
            | FailureKind::Timeout
            | FailureKind::Server
            | FailureKind::Throttled
            | FailureKind::ChecksumMismatch
            // The next attempt starts a new upload.
            | FailureKind::NoSuchUpload => true,
            FailureKind::AccessDenied
            | FailureKind::NoSuchBucket
            | FailureKind::InvalidCredentials
            | FailureKind::SignatureMismatch
            | FailureKind::Refused
            | FailureKind::LocalIo
            | FailureKind::Gone => false,
        }
    }

    /// The `kind` label of the failure metric.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connection => "connection",
            FailureKind::Timeout => "timeout",
            FailureKind::Server => "server",
            FailureKind::Throttled => "throttled",
            FailureKind::ChecksumMismatch => "checksum_mismatch",
            FailureKind::NoSuchUpload => "no_such_upload",
            FailureKind::AccessDenied => "access_denied",
            FailureKind::NoSuchBucket => "no_such_bucket",
            FailureKind::InvalidCredentials => "invalid_credentials",
            FailureKind::SignatureMismatch => "signature_mismatch",
            FailureKind::Refused => "refused",
            FailureKind::LocalIo => "local_io",
            FailureKind::Gone => "gone",
        }
    }

    /// What a person can do about a permanent failure.
    pub fn hint(self) -> &'static str {
        match self {
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
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Maps an error code and HTTP status from the store to a kind.
pub fn classify_code(code: Option<&str>, status: Option<u16>) -> FailureKind {
    match code {
        Some("AccessDenied" | "AllAccessDisabled" | "AccountProblem") => FailureKind::AccessDenied,
        Some("NoSuchBucket") => FailureKind::NoSuchBucket,
        Some("InvalidAccessKeyId" | "InvalidToken" | "ExpiredToken" | "TokenRefreshRequired") => {
            FailureKind::InvalidCredentials
        }
        Some("SignatureDoesNotMatch" | "RequestTimeTooSkewed") => FailureKind::SignatureMismatch,
        Some("NoSuchUpload") => FailureKind::NoSuchUpload,
        // AWS says BadDigest, garage InvalidDigest; XAmzContentSHA256Mismatch
        // is the signed-payload form of the same thing.
        Some("BadDigest" | "InvalidDigest" | "XAmzContentSHA256Mismatch") => {
            FailureKind::ChecksumMismatch
        }
        Some("SlowDown" | "Throttling" | "ThrottlingException" | "TooManyRequests") => {
            FailureKind::Throttled
        }
        // A 400 from AWS when the body did not arrive in time.
        Some("RequestTimeout") => FailureKind::Throttled,
        Some("InternalError" | "ServiceUnavailable") => FailureKind::Server,
        _ => match status {
            Some(429) => FailureKind::Throttled,
            Some(s) if s >= 500 => FailureKind::Server,
            Some(403) => FailureKind::AccessDenied,
            Some(404) => FailureKind::NoSuchBucket,
            Some(_) => FailureKind::Refused,
            None => FailureKind::Connection,
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_mismatch_is_transient_under_both_names() {
        for code in ["BadDigest", "InvalidDigest"] {
            let kind = classify_code(Some(code), Some(400));
            assert_eq!(kind, FailureKind::ChecksumMismatch);
            assert!(kind.is_transient());
        }
    }

    #[test]
    fn credentials_and_bucket_errors_are_permanent() {
        for (code, kind) in [
            ("AccessDenied", FailureKind::AccessDenied),
            ("NoSuchBucket", FailureKind::NoSuchBucket),
            ("InvalidAccessKeyId", FailureKind::InvalidCredentials),
            ("SignatureDoesNotMatch", FailureKind::SignatureMismatch),
        ] {
            let got = classify_code(Some(code), Some(403));
            assert_eq!(got, kind, "{code}");
            assert!(!got.is_transient(), "{code}");
        }
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        assert_eq!(
            classify_code(Some("SlowDown"), Some(503)),
            FailureKind::Throttled
        );
        assert_eq!(
            classify_code(Some("RequestTimeout"), Some(400)),
            FailureKind::Throttled
        );
        assert_eq!(classify_code(None, Some(429)), FailureKind::Throttled);
        assert_eq!(classify_code(None, Some(502)), FailureKind::Server);
        assert_eq!(
            classify_code(Some("InternalError"), Some(500)),
            FailureKind::Server
        );
        assert_eq!(classify_code(None, None), FailureKind::Connection);
        for kind in [
            FailureKind::Throttled,
            FailureKind::Server,
            FailureKind::Connection,
            FailureKind::Timeout,
        ] {
            assert!(kind.is_transient());
        }
    }

    #[test]
    fn unknown_refusals_are_not_retried_fast() {
        let kind = classify_code(Some("InvalidRequest"), Some(400));
        assert_eq!(kind, FailureKind::Refused);
        assert!(!kind.is_transient());
    }
}
