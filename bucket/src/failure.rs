//! How S3's answers are classified: [`FailureKind`] and [`classify_code`],
//! one table shared by the uploader (retries, readiness, metrics) and the
//! `captures` CLI (which error to show). The SDK-level wrapping of errors
//! stays with each binary.
//!
//! [`FailureKind::is_transient`] is the one rule for what retries fast:
//! the store could not be reached or answered "not now" (connection,
//! timeouts, 5xx, `SlowDown`/429, `RequestTimeout`), or the body arrived
//! corrupted (`BadDigest` on AWS, `InvalidDigest` on garage). Everything
//! else needs a person: `AccessDenied`, `NoSuchBucket`,
//! `InvalidAccessKeyId`, `SignatureDoesNotMatch`, and any other 4xx.

use std::fmt;

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
        // A missing object (GET's NoSuchKey, HEAD's bodiless NotFound) is a
        // refusal of that request, not a missing bucket: without this rule
        // its 404 read as NoSuchBucket.
        Some("NoSuchKey" | "NotFound") => FailureKind::Refused,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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
    fn a_missing_key_is_not_a_missing_bucket() {
        for code in ["NoSuchKey", "NotFound"] {
            assert_eq!(classify_code(Some(code), Some(404)), FailureKind::Refused);
        }
        assert_eq!(
            classify_code(Some("NoSuchBucket"), Some(404)),
            FailureKind::NoSuchBucket
        );
    }

    #[test]
    fn unknown_refusals_are_not_retried_fast() {
        let kind = classify_code(Some("InvalidRequest"), Some(400));
        assert_eq!(kind, FailureKind::Refused);
        assert!(!kind.is_transient());
    }
}
