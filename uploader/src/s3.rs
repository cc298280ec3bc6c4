//! The S3 client, and the probe that tells whether bucket and credentials
//! work without needing read permission.
//!
//! Timeouts are set so that a hung connection (for example a pooled one that
//! went stale during a long idle gap) cannot stall a worker: the connect and
//! read timeouts bound each step, the attempt timeout bounds a whole request
//! (a 16 MiB part included, on a slow link). The SDK's own retries are off:
//! `retry.rs` decides, so that every attempt is counted and classified.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;

use crate::bucket_owner::{self, ExpectedBucketOwner};
use crate::config::S3Settings;
use crate::connect;
use crate::errors::{ConfigError, ProbeError, UploadError};
use crate::keys::{KeyTemplate, PROBE_OBJECT};
use crate::retry::{self, FailureKind};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(600);
/// An upload id no store hands out.
const PROBE_UPLOAD_ID: &str =
    "s3-tcpdump-probe-0000000000000000000000000000000000000000000000000000000000";

/// Loads region and credentials from the default chain and builds the client.
pub async fn client(settings: &S3Settings) -> Result<Client, ConfigError> {
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .load()
        .await;
    if shared.region().is_none() {
        return Err(ConfigError::NoRegion);
    }
    // Only S3's connections are marked (see `connect.rs`): they are the ones
    // that carry captures. Credential and metadata calls keep the SDK's client.
    let mut builder = aws_sdk_s3::config::Builder::from(&shared)
        .http_client(connect::marked_http_client()?)
        .force_path_style(settings.force_path_style);
    if let Some(url) = &settings.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    match &settings.expected_bucket_owner {
        Some(account) => builder = builder.interceptor(ExpectedBucketOwner::new(account)),
        None => tracing::warn!(
            bucket = %settings.bucket,
            "{} is not set: S3 will not check which account owns the bucket (set it for AWS S3; scripts/deploy does)",
            bucket_owner::VARIABLE
        ),
    }
    Ok(Client::from_conf(builder.build()))
}

/// Reads this instance's id from the instance metadata service (IMDSv2).
pub async fn instance_id() -> Result<String, ConfigError> {
    let imds = aws_config::imds::Client::builder().build();
    match tokio::time::timeout(
        Duration::from_secs(10),
        imds.get("/latest/meta-data/instance-id"),
    )
    .await
    {
        Ok(Ok(id)) => Ok(id.as_ref().to_owned()),
        Ok(Err(e)) => Err(ConfigError::InstanceId {
            reason: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
        }),
        Err(_) => Err(ConfigError::InstanceId {
            reason: "timed out after 10 s".to_owned(),
        }),
    }
}

/// Asks the bucket about a multipart upload that does not exist, under the
/// template's prefix. `NoSuchUpload` proves that the bucket exists, the
/// credentials are valid and the policy allows the multipart calls there;
/// anything else is explained.
pub async fn probe(
    client: &Client,
    settings: &S3Settings,
    template: &KeyTemplate,
) -> Result<(), ProbeError> {
    let bucket = settings.bucket.as_str();
    let key = format!("{}{PROBE_OBJECT}", template.static_prefix());
    let result = client
        .list_parts()
        .bucket(bucket)
        .key(&key)
        .upload_id(PROBE_UPLOAD_ID)
        .send()
        .await;
    let error = match result {
        // A store that lists parts of an upload it never made is odd but
        // proves access all the same.
        Ok(_) => return Ok(()),
        Err(e) => retry::classify("ListParts", &e),
    };
    if accepts(&error) {
        return Ok(());
    }
    let hint = match (&settings.expected_bucket_owner, error.kind) {
        (Some(account), FailureKind::AccessDenied) => {
            bucket_owner::access_denied_hint(account, bucket)
        }
        _ => error.kind.hint().to_owned(),
    };
    Err(ProbeError {
        bucket: bucket.to_owned(),
        hint,
        error,
    })
}

/// Answers to the probe that prove bucket, credentials and permission.
fn accepts(error: &UploadError) -> bool {
    match error.kind {
        FailureKind::NoSuchUpload => true,
        // Some stores check the upload id's format before looking it up;
        // that, too, happens only after authentication and authorization.
        FailureKind::Refused => {
            error.detail.contains("InvalidArgument") || error.detail.contains("upload")
        }
        _ => false,
    }
}
