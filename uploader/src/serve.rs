//! Serving (the default): the admin server and the bucket probe, uploads
//! of whatever arrives in `ready/` (woken by the watcher, with periodic
//! rescans as the safety net) and of the identity journal's segments,
//! until SIGTERM or SIGINT, then the drain.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::errors::RunError;
use crate::health::{Health, Source};
use crate::metrics::Metrics;
use crate::pins::{self, PinBook};
use crate::pipeline::Pipeline;
use crate::ship::Shipper;
use crate::{admin, find, journal, keys, ring_index, s3, shutdown};

/// How long the start waits for the first read of the pins (pinned mode).
const FIRST_POLL_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn run(shipper: &Shipper, client: aws_sdk_s3::Client) -> Result<(), RunError> {
    let config = shipper.config.clone();
    let signals = shutdown::Signals::install();
    let mut tasks = JoinSet::new();
    let server = admin::bind(
        config.metrics_addr,
        shipper.metrics.clone(),
        shipper.health.clone(),
    )
    .await
    .map_err(|source| RunError::MetricsBind {
        addr: config.metrics_addr,
        source,
    })?;
    tasks.spawn(server);
    tracing::info!(addr = %config.metrics_addr, "serving /metrics, /healthz, /readyz");
    tasks.spawn(probe_until_ready(
        client.clone(),
        config.clone(),
        shipper.health.clone(),
    ));

    if let Some(book) = &shipper.pins {
        // The pins before the first scan: otherwise a ring over budget at
        // start could let expire what a pin written meanwhile covers.
        let first = pins::poll(
            &client,
            &config.s3.bucket,
            config.key_template.static_prefix(),
            book,
            &shipper.metrics.pins,
        );
        match tokio::time::timeout(FIRST_POLL_TIMEOUT, first).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(kind = %e.kind, error = %e.detail, pins = book.pins().len(), "cannot read the pins at start; using the local copy until the bucket answers")
            }
            Err(_) => {
                tracing::warn!(
                    pins = book.pins().len(),
                    "the pins did not come within {FIRST_POLL_TIMEOUT:?} at start; using the local copy until the bucket answers"
                )
            }
        }
    }
    let mut pipeline = Pipeline::start(shipper);
    let wake = Arc::new(Notify::new());
    let ready = config.spool.ready();
    let _watcher = find::watch(
        &ready,
        wake.clone(),
        shipper.metrics.lost_watch_events.clone(),
    )
    .map_err(|source| RunError::Watch {
        path: ready.clone(),
        source,
    })?;
    if let Some(book) = &shipper.pins {
        tasks.spawn(poll_pins(
            client.clone(),
            config.clone(),
            book.clone(),
            shipper.metrics.clone(),
            wake.clone(),
        ));
    }
    let scan = pipeline.scanner();
    let rescan_interval = config.rescan_interval;
    tasks.spawn(async move {
        loop {
            scan();
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(rescan_interval) => {}
            }
        }
    });

    // The identity journal's segments, beside the pipeline: a pass over
    // journal/ whenever ready/ is rescanned (segments come once a period).
    let journal_shipper = shipper.clone();
    tasks.spawn(async move {
        loop {
            journal::ship_pending(&journal_shipper).await;
            tokio::time::sleep(rescan_interval).await;
        }
    });
    if config.upload_mode.ships_ring_indexes() {
        let ring_shipper = shipper.clone();
        tasks.spawn(async move {
            loop {
                ring_index::ship_pending(&ring_shipper).await;
                tokio::time::sleep(rescan_interval).await;
            }
        });
    }

    let signal = signals.requested().await;
    tracing::info!(
        signal,
        timeout = ?config.drain_timeout,
        "draining: uploading what is ready until the spool is empty"
    );
    let idle = pipeline.idleness();
    let pinned_idle: Option<&(dyn Fn() -> bool + Send + Sync)> =
        shipper.pins.is_some().then_some(&idle);
    let drained = shutdown::drain(&config.spool, config.drain_timeout, pinned_idle).await;
    pipeline.abort();
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

/// Pinned mode: lists the pins every `--pin-poll-seconds`; a new pin wakes
/// the scanner, so that its captures are queued at once. A failed poll
/// keeps the pins known before (and the local copy).
async fn poll_pins(
    client: aws_sdk_s3::Client,
    config: Arc<Config>,
    book: Arc<PinBook>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
) {
    let mut failing = false;
    loop {
        match pins::poll(
            &client,
            &config.s3.bucket,
            config.key_template.static_prefix(),
            &book,
            &metrics.pins,
        )
        .await
        {
            Ok(polled) => {
                if failing {
                    tracing::info!("pins read again");
                }
                failing = false;
                if polled.added > 0 {
                    wake.notify_one();
                }
            }
            Err(e) => {
                metrics.pins.poll_failures.inc();
                if !failing {
                    tracing::warn!(kind = %e.kind, error = %e.detail, pins = book.pins().len(), "cannot read the pins; the pins known before stay in force (counted in pin_poll_failures_total)");
                }
                failing = true;
            }
        }
        tokio::time::sleep(config.pin_poll_interval).await;
    }
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
                s3::record_layout(&client, &config.s3, &config.key_template).await;
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
