//! The user metadata every uploaded capture carries: the one place that names
//! it. S3 returns these as `x-amz-meta-<name>` headers; tools that read
//! captures back import these constants.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};

/// Lowercase hex SHA-256 of the whole file, so that `sha256sum` of a
/// download can be compared with it directly.
pub const SHA256: &str = "sha256";
/// The capture's UTC start time, RFC 3339 (`2026-11-27T14:25:03Z`).
pub const CAPTURE_START: &str = "capture-start";
/// The node the capture was taken on (`{node}` of the key template).
pub const NODE: &str = "node";
/// Name and version of the program that uploaded it.
pub const UPLOADER: &str = "uploader";

/// The metadata of one capture.
pub fn for_capture(sha256_hex: &str, start: DateTime<Utc>, node: &str) -> HashMap<String, String> {
    HashMap::from([
        (SHA256.to_owned(), sha256_hex.to_owned()),
        (
            CAPTURE_START.to_owned(),
            start.to_rfc3339_opts(SecondsFormat::Secs, true),
        ),
        (NODE.to_owned(), node.to_owned()),
        (
            UPLOADER.to_owned(),
            concat!("s3-tcpdump-uploader/", env!("CARGO_PKG_VERSION")).to_owned(),
        ),
    ])
}
