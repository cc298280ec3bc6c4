//! The S3 client, where its credentials come from, and the probe that tells
//! whether bucket and credentials work without needing read permission.
//!
//! Timeouts are set so that a hung connection (for example a pooled one that
//! went stale during a long idle gap) cannot stall a worker, while a slow
//! link that keeps moving never fails: the connect timeout bounds the
//! connect, the read timeout bounds silence (the `s3-http` crate), and there is no
//! limit on a whole request, whose length grows with the capture's size. The SDK's own retries are off:
//! `retry.rs` decides, so that every attempt is counted and classified.

use std::fmt;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::ecs::EcsCredentialsProvider;
use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::web_identity_token::WebIdentityTokenCredentialsProvider;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError as ProviderError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;

use crate::bucket_owner::{self, ExpectedBucketOwner};
use crate::config::S3Settings;
use crate::errors::{ConfigError, CredentialsError, ProbeError};
use crate::failure::{self, FailureKind, UploadError};
use crate::keys::{CHECKSUM_PROBE_OBJECT, KeyTemplate, PROBE_OBJECT};
use bucket::layout_record::{LAYOUT_CONTENT_TYPE, LayoutRecord};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// An upload id no store hands out.
const PROBE_UPLOAD_ID: &str =
    "s3-tcpdump-probe-0000000000000000000000000000000000000000000000000000000000";

/// Where the uploader's AWS credentials come from. Named in the start-up log
/// and by `--check`; the credentials themselves (key id, secret, role) never
/// are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    Environment,
    Profile,
    WebIdentity,
    Container,
    NodeRole,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Environment => "environment (AWS_ACCESS_KEY_ID)",
            Self::Profile => "profile (AWS config and credentials files)",
            Self::WebIdentity => "web identity (IRSA)",
            Self::Container => "container provider (EKS Pod Identity)",
            Self::NodeRole => "node role (instance metadata, allowed by ALLOW_NODE_ROLE)",
        })
    }
}

/// Builds the client: region from the SDK's chain, credentials from
/// `credential_chain`. Every request, to S3, STS, the Pod Identity agent
/// or instance metadata, goes through the one client of the `s3-http` crate.
pub async fn client(settings: &S3Settings) -> Result<(Client, CredentialChain), ConfigError> {
    let http = s3_http::marked_http_client()?;
    // Region from AWS_REGION, the profile or instance metadata: a region is
    // no credential, so instance metadata may tell it.
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http.clone())
        .no_credentials()
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(settings.read_timeout)
                .build(),
        )
        .load()
        .await;
    let region = shared.region().cloned().ok_or(ConfigError::NoRegion)?;
    let providers = ProviderConfig::default()
        .with_http_client(http)
        .with_region(Some(region));
    let credentials = CredentialChain {
        provider: SharedCredentialsProvider::new(credential_chain(
            &providers,
            settings.allow_node_role,
        )),
        allow_node_role: settings.allow_node_role,
    };
    let mut builder = aws_sdk_s3::config::Builder::from(&shared)
        .credentials_provider(credentials.provider.clone())
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
    Ok((Client::from_conf(builder.build()), credentials))
}

/// The SDK's default chain in its order, without instance metadata unless
/// the node's role is allowed: with host networking the pod always reaches
/// it, and a missing IRSA or Pod Identity binding would silently upload with
/// the node's role instead of the write-only policy.
fn credential_chain(conf: &ProviderConfig, allow_node_role: bool) -> CredentialsProviderChain {
    let chain = CredentialsProviderChain::first_try(
        "Environment",
        Labelled(
            CredentialSource::Environment,
            EnvironmentVariableCredentialsProvider::new(),
        ),
    )
    .or_else(
        "Profile",
        Labelled(
            CredentialSource::Profile,
            ProfileFileCredentialsProvider::builder()
                .configure(conf)
                .build(),
        ),
    )
    .or_else(
        "WebIdentityToken",
        Labelled(
            CredentialSource::WebIdentity,
            WebIdentityTokenCredentialsProvider::builder()
                .configure(conf)
                .build(),
        ),
    )
    .or_else(
        "EcsContainer",
        Labelled(
            CredentialSource::Container,
            EcsCredentialsProvider::builder().configure(conf).build(),
        ),
    );
    if allow_node_role {
        chain.or_else(
            "Ec2InstanceMetadata",
            Labelled(
                CredentialSource::NodeRole,
                ImdsCredentialsProvider::builder().configure(conf).build(),
            ),
        )
    } else {
        chain
    }
}

/// A credential provider that tags what it hands out with its source.
#[derive(Debug)]
struct Labelled<P>(CredentialSource, P);

impl<P: ProvideCredentials> ProvideCredentials for Labelled<P> {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let mut credentials = self.1.provide_credentials().await?;
            credentials.set_property(self.0);
            Ok(credentials)
        })
    }

    fn fallback_on_interrupt(&self) -> Option<Credentials> {
        self.1.fallback_on_interrupt()
    }
}

/// The client's credential chain, kept to tell where credentials come from.
#[derive(Debug, Clone)]
pub struct CredentialChain {
    provider: SharedCredentialsProvider,
    allow_node_role: bool,
}

impl CredentialChain {
    /// Resolves credentials once and tells where they came from.
    pub async fn source(&self) -> Result<CredentialSource, CredentialsError> {
        source(&self.provider, self.allow_node_role).await
    }
}

async fn source(
    provider: &SharedCredentialsProvider,
    allow_node_role: bool,
) -> Result<CredentialSource, CredentialsError> {
    let fix = if allow_node_role {
        "bind an IAM role to the pod's service account (IRSA or EKS Pod Identity), set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give the node an instance profile"
    } else {
        "bind an IAM role to the pod's service account (IRSA or EKS Pod Identity), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; the node's role (instance metadata) is used only with ALLOW_NODE_ROLE=true"
    };
    let tried = if allow_node_role {
        "environment, profile, web identity, container provider, node role"
    } else {
        "environment, profile, web identity, container provider"
    };
    let error = |reason: String| CredentialsError { reason, fix };
    let credentials = provider.provide_credentials().await.map_err(|e| match e {
        ProviderError::CredentialsNotLoaded(_) => error(format!("none found (tried {tried})")),
        other => error(DisplayErrorContext(&other).to_string()),
    })?;
    credentials
        .get_property::<CredentialSource>()
        .copied()
        .ok_or_else(|| error("credentials of unknown origin".to_owned()))
}

/// Reads this instance's id from the instance metadata service (IMDSv2),
/// through the same client as everything else. No credentials are asked for.
pub async fn instance_id() -> Result<String, ConfigError> {
    let conf = ProviderConfig::default().with_http_client(s3_http::marked_http_client()?);
    let imds = aws_config::imds::Client::builder().configure(&conf).build();
    match tokio::time::timeout(
        Duration::from_secs(10),
        imds.get("/latest/meta-data/instance-id"),
    )
    .await
    {
        Ok(Ok(id)) => Ok(id.as_ref().to_owned()),
        Ok(Err(e)) => Err(ConfigError::InstanceId {
            reason: DisplayErrorContext(e).to_string(),
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
        Err(e) => failure::classify("ListParts", &e),
    };
    if accepts(&error) {
        return Ok(());
    }
    let hint = match (&settings.expected_bucket_owner, error.kind) {
        (Some(account), FailureKind::AccessDenied) => {
            bucket_owner::access_denied_hint(account, bucket)
        }
        _ => failure::hint(error.kind).to_owned(),
    };
    Err(ProbeError {
        bucket: bucket.to_owned(),
        hint,
        error,
    })
}

/// Whether the store confirms the checksums it is sent: an empty object
/// written with its SHA-256 next to the probe key, and the checksum in the
/// answer looked at. Some S3-compatible stores accept the header and ignore
/// it; their uploads are then not verified by the store, which the uploader
/// says once, plainly, instead of calling them verified.
pub async fn confirms_checksums(
    client: &Client,
    settings: &S3Settings,
    template: &KeyTemplate,
) -> Result<bool, UploadError> {
    use sha2::Digest as _;
    let key = format!("{}{CHECKSUM_PROBE_OBJECT}", template.static_prefix());
    let empty = crate::hash::base64(&sha2::Sha256::digest(b""));
    let output = client
        .put_object()
        .bucket(&settings.bucket)
        .key(&key)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b""))
        .checksum_sha256(&empty)
        .send()
        .await
        .map_err(|e| failure::classify("PutObject", &e))?;
    Ok(output.checksum_sha256() == Some(empty.as_str()))
}

/// Writes the layout record (`bucket::layout_record`) under the template's
/// static prefix, so that `captures` reads this bucket without being told
/// the template. Written at every start: the same bytes for the same
/// template; when uploaders with different templates share a prefix, the
/// last one started is recorded.
pub async fn write_layout_record(
    client: &Client,
    settings: &S3Settings,
    template: &KeyTemplate,
) -> Result<(), UploadError> {
    let key = LayoutRecord::key(template);
    client
        .put_object()
        .bucket(&settings.bucket)
        .key(&key)
        .content_type(LAYOUT_CONTENT_TYPE)
        .body(aws_sdk_s3::primitives::ByteStream::from(
            LayoutRecord::for_template(template).to_json(),
        ))
        .send()
        .await
        .map_err(|e| failure::classify(&format!("PutObject {key}"), &e))?;
    Ok(())
}

/// Logs a layout record that could not be written: uploads go on, but
/// `captures` then needs `--key-template` for a template other than the
/// default.
pub async fn record_layout(client: &Client, settings: &S3Settings, template: &KeyTemplate) {
    if let Err(e) = write_layout_record(client, settings, template).await {
        tracing::warn!(
            error = %e,
            key = LayoutRecord::key(template),
            "could not write the layout record; `captures` will need --key-template to read this bucket"
        );
    }
}

/// What the uploader says when a store does not confirm checksums.
pub const UNCONFIRMED_CHECKSUMS: &str = "the store accepts uploads without confirming their SHA-256 (some S3-compatible stores ignore the checksum header): captures are checked on disk and the SHA-256 is in each object's metadata, but the store does not verify what it received";

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
