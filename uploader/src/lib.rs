//! The uploader: ships finished packet captures from the spool's `ready/`
//! folder to S3, each with a verified SHA-256, and deletes a capture locally
//! only after S3 confirmed it.
//!
//! The stages, one module each: [`find`] (what is ready, and a wake-up when
//! that changes), [`queue`] (oldest first, what is in flight), [`hash`],
//! [`upload`], [`verify`], [`delete`], with [`ship`] running them for one
//! capture and [`retry`] deciding what is retried how. Around them:
//! [`state`] (multipart resume records), [`budget`] (spool size limit),
//! [`keys`] and [`object_metadata`] (what objects are called and carry),
//! [`metrics`], [`admin`] (HTTP endpoints and readiness), [`shutdown`]
//! (SIGTERM and the drain), [`s3`] (the client and the bucket probe).

pub mod admin;
pub mod bucket_owner;
pub mod budget;
pub mod cli;
pub mod config;
pub mod connect;
pub mod delete;
pub mod errors;
pub mod find;
pub mod hash;
pub mod metrics;
pub mod queue;
pub mod retry;
pub mod s3;
pub mod ship;
pub mod shutdown;
pub mod state;
pub mod upload;
pub mod verify;

// The key layout and object metadata are the spool crate's (shared with the
// `captures` CLI); re-exported so `crate::keys` paths keep working.
pub use spool::{keys, object_metadata};

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::admin::{Health, Source};
use crate::config::{Config, Mode};
use crate::errors::RunError;
use crate::find::Capture;
use crate::keys::{KeyContext, Placeholder};
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::ship::Shipper;
use crate::upload::Sender;

/// Runs the uploader until it is told to stop (or, with `--once` and
/// `--check`, until its one job is done).
pub async fn run(config: Config) -> Result<(), RunError> {
    let key_context = key_context(&config).await?;
    let (client, credentials) = s3::client(&config.s3).await?;
    let credentials = credentials.source().await;
    if let Ok(source) = &credentials {
        tracing::info!(credentials = %source, "AWS credentials found");
    }
    if config.mode == Mode::Check {
        return check(&config, &client, &key_context, credentials?).await;
    }
    if let Err(e) = &credentials {
        tracing::warn!(error = %e, "no AWS credentials yet; uploads wait for them");
    }
    find::prepare(&config.spool)?;

    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(&config.s3.bucket));
    let mut tasks = JoinSet::new();

    if config.mode == Mode::Serve {
        let server = admin::bind(config.metrics_addr, metrics.clone(), health.clone())
            .await
            .map_err(|source| RunError::MetricsBind {
                addr: config.metrics_addr,
                source,
            })?;
        tasks.spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "admin server stopped");
            }
        });
        tracing::info!(addr = %config.metrics_addr, "serving /metrics, /healthz, /readyz");
        tasks.spawn(probe_until_ready(
            client.clone(),
            config.clone(),
            health.clone(),
        ));
    }

    let shipper = Shipper {
        config: config.clone(),
        sender: Sender::new(client, config.s3.clone(), config.concurrency),
        key_context: Arc::new(key_context),
        metrics: metrics.clone(),
        health: health.clone(),
    };
    let queue = Arc::new(Queue::default());
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = JoinSet::new();
    for _ in 0..config.concurrency {
        let (queue, shipper, failed) = (queue.clone(), shipper.clone(), failed.clone());
        workers.spawn(async move {
            while let Some(capture) = queue.next().await {
                if let Err(e) = shipper.ship(&capture).await
                    && e.kind != retry::FailureKind::Gone
                {
                    failed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(capture.file_name());
                }
                queue.finish(&capture.name);
            }
        });
    }

    tracing::info!(
        spool = %config.spool.root().display(),
        bucket = %config.s3.bucket,
        key_template = %config.key_template.as_str(),
        concurrency = config.concurrency,
        "uploader started"
    );

    if config.mode == Mode::Once {
        rescan(&config, &queue, &metrics);
        queue.close();
        while workers.join_next().await.is_some() {}
        let failed = failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let left: Vec<String> = find::scan(&config.spool)
            .unwrap_or_default()
            .iter()
            .map(Capture::file_name)
            .collect();
        if !left.is_empty() || !failed.is_empty() {
            return Err(RunError::LeftBehind(if left.is_empty() {
                failed
            } else {
                left
            }));
        }
        tracing::info!("everything in ready/ was uploaded");
        return Ok(());
    }

    // Serve: watch and rescan until a signal, then drain.
    let wake = Arc::new(Notify::new());
    let ready = config.spool.ready();
    let _watcher = find::watch(&ready, wake.clone()).map_err(|source| RunError::Watch {
        path: ready.clone(),
        source,
    })?;
    {
        let (config, queue, metrics) = (config.clone(), queue.clone(), metrics.clone());
        tasks.spawn(async move {
            loop {
                rescan(&config, &queue, &metrics);
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(config.rescan_interval) => {}
                }
            }
        });
    }

    let signal = shutdown::requested().await;
    tracing::info!(
        signal,
        timeout = ?config.drain_timeout,
        "draining: uploading what is ready until the spool is empty"
    );
    let drained = shutdown::drain(&config.spool, config.drain_timeout).await;
    workers.abort_all();
    tasks.abort_all();
    if drained {
        tracing::info!("spool drained; exiting");
    } else {
        let left = config.spool.leftovers();
        tracing::warn!(
            count = left.len(),
            files = %left.join(", "),
            "drain timeout reached; leaving these in the spool (multipart uploads resume on the next start)"
        );
    }
    Ok(())
}

/// Scans `ready/`, feeds the queue, keeps the budget, updates the gauges.
fn rescan(config: &Config, queue: &Queue, metrics: &Metrics) {
    metrics.scans.inc();
    match find::scan(&config.spool) {
        Ok(found) => queue.refresh(found),
        Err(e) => {
            tracing::error!(path = %config.spool.ready().display(), error = %e, "cannot scan ready/")
        }
    }
    budget::enforce(&config.spool, config.max_spool_bytes, queue, metrics);
    let age = queue
        .oldest()
        .map(|name| (Utc::now() - name.start()).num_seconds().max(0))
        .unwrap_or(0);
    metrics.oldest_pending_age_seconds.set(age);
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

/// `--check`: configuration is valid (already), credentials resolve and the
/// bucket answers the probe.
async fn check(
    config: &Config,
    client: &aws_sdk_s3::Client,
    ctx: &KeyContext,
    credentials: s3::CredentialSource,
) -> Result<(), RunError> {
    s3::probe(client, &config.s3, &config.key_template).await?;
    let confirms = s3::confirms_checksums(client, &config.s3, &config.key_template).await;
    let example = spool::CaptureName::new(Utc::now(), 0);
    #[allow(clippy::print_stdout)]
    {
        match confirms {
            Ok(true) => {}
            Ok(false) => println!("note: {}", s3::UNCONFIRMED_CHECKSUMS),
            Err(e) => println!("note: could not learn whether the store confirms checksums ({e})"),
        }
        println!(
            "ok: bucket {:?} accepts uploads with credentials from {credentials}; a capture starting now would go to {:?}",
            config.s3.bucket,
            config.key_template.render(ctx, &example)
        );
        if !find::spool_exists(&config.spool) {
            println!(
                "note: spool folder {} does not exist here; the uploader would refuse to start (mount the spool volume there)",
                config.spool.root().display()
            );
        }
    }
    Ok(())
}

/// Re-probes the bucket while readiness is false because of the probe.
async fn probe_until_ready(client: aws_sdk_s3::Client, config: Arc<Config>, health: Arc<Health>) {
    let probe_key = format!(
        "{}{}",
        config.key_template.static_prefix(),
        keys::PROBE_OBJECT
    );
    loop {
        match s3::probe(&client, &config.s3, &config.key_template).await {
            Ok(()) => {
                health.succeeded(Source::Probe);
                match s3::confirms_checksums(&client, &config.s3, &config.key_template).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!("{}", s3::UNCONFIRMED_CHECKSUMS),
                    Err(e) => {
                        tracing::debug!(error = %e, "could not learn whether the store confirms checksums")
                    }
                }
                if health.is_ready() {
                    return;
                }
            }
            Err(e) => health.failed(Source::Probe, &probe_key, &e.error),
        }
        let delay = config.retry.permanent_delay.min(Duration::from_secs(30));
        tokio::time::sleep(delay).await;
    }
}
