//! The uploader: ships finished packet captures from the spool's `ready/`
//! folder to S3, each with a verified SHA-256, and deletes a capture locally
//! only after S3 confirmed it.
//!
//! [`run`] dispatches to one of three modes, a module each: [`check`],
//! [`once`] and [`serve`]. The last two drive a [`pipeline`]: [`find`] (what
//! is ready, and a wake-up when that changes) feeds the [`queue`] (oldest
//! first, what is in flight), whose workers [`ship`] each capture through
//! [`hash`], [`upload`], [`verify`] and [`delete`]; [`failure`] says what
//! went wrong and whether it is transient, [`retry`] the one decision
//! after a failure (retry, hash again, defer, give up). Beside the
//! pipeline, [`journal`] ships the identity journal's segments through the
//! same sender and retry decision. Around them: [`spool_check`] (is the spool usable), [`state`]
//! (multipart resume records), [`budget`] (spool size limit), [`keys`] and
//! [`object_metadata`] (what objects are called and carry: the `bucket`
//! crate's contract, re-exported), [`metrics`],
//! [`quarantine`] (what in `ready/` is not a regular file), [`pins`] (the
//! flight recorder: `--upload-mode pinned` ships only what a pin covers),
//! [`health`] (readiness), [`admin`] (HTTP endpoints, served by
//! `admin_http`'s bounded server, which the launcher shares), [`shutdown`]
//! (SIGTERM and the drain), [`s3`] (the client and the bucket probe).

pub mod admin;
pub mod bucket_owner;
pub mod budget;
pub mod check;
pub mod cli;
pub mod config;
pub mod delete;
pub mod errors;
pub mod failure;
pub mod find;
pub mod hash;
pub mod health;
pub mod journal;
pub mod metrics;
pub mod once;
pub mod pins;
pub mod pipeline;
pub mod quarantine;
pub mod queue;
pub mod retry;
pub mod ring_index;
pub mod s3;
pub mod serve;
pub mod ship;
pub mod shutdown;
pub mod spool_check;
pub mod state;
pub mod upload;
pub mod verify;

// The key layout and object metadata are the bucket crate's (shared with the
// `captures` CLI).
pub use bucket::{capture_keys as keys, object_metadata};

use std::sync::Arc;

use crate::config::{Config, Mode};
use crate::errors::RunError;
use crate::health::Health;
use crate::keys::{KeyContext, Placeholder};
use crate::metrics::Metrics;
use crate::ship::Shipper;

/// Runs the uploader until it is told to stop (or, with `--once` and
/// `--check`, until its one job is done).
pub async fn run(config: Config) -> Result<(), RunError> {
    let key_context = key_context(&config).await?;
    let (client, credentials) = s3::client(&config.s3).await?;
    let credentials = credentials.source().await;
    if let Ok(source) = &credentials {
        tracing::info!(credentials = %source, "AWS credentials found");
    }
    match config.mode {
        Mode::Check => check::run(&config, &client, &key_context, credentials?).await,
        Mode::Once => {
            let shipper = shipper(config, client.clone(), key_context, &credentials)?;
            let config = &shipper.config;
            s3::record_layout(&client, &config.s3, &config.key_template).await;
            once::run(&shipper, &client).await
        }
        Mode::Serve => {
            let shipper = shipper(config, client.clone(), key_context, &credentials)?;
            serve::run(&shipper, client).await
        }
    }
}

/// What uploading needs, in both modes that upload: a usable spool and a
/// shipper. Missing credentials do not stop the start: the uploader waits
/// for them (IRSA tokens can arrive after the container).
fn shipper(
    config: Config,
    client: aws_sdk_s3::Client,
    key_context: KeyContext,
    credentials: &Result<s3::CredentialSource, errors::CredentialsError>,
) -> Result<Shipper, RunError> {
    if let Err(e) = credentials {
        tracing::warn!(error = %e, "no AWS credentials yet; uploads wait for them");
    }
    spool_check::prepare(&config.spool)?;
    let health = Arc::new(Health::new(&config.s3.bucket));
    let pins = config.upload_mode.is_pinned().then(|| {
        Arc::new(pins::PinBook::load(
            &key_context.node,
            config.spool.pins_cache(),
        ))
    });
    let mut shipper = Shipper::new(
        Arc::new(config),
        client,
        key_context,
        Arc::new(Metrics::new()),
        health,
    );
    shipper.pins = pins;
    Ok(shipper)
}

async fn key_context(config: &Config) -> Result<KeyContext, RunError> {
    let mut ctx = config
        .key_template
        .context_from_env(|var| std::env::var(var).ok(), hostname)?;
    if config.key_template.uses(Placeholder::InstanceId) {
        ctx.instance_id = Some(s3::instance_id().await?);
    }
    Ok(ctx)
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-node".to_owned())
}
