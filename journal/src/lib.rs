//! The identity journal: which pod or Service held each IP address on this
//! node, and from when to when, written into the spool once per rotation
//! period beside the captures; the uploader ships each segment to the
//! bucket under `journal/` (see `bucket::journal_keys` and
//! `bucket::journal_record`).
//!
//! Stages: [`watch`] (kube-runtime watchers of the node's pods and the
//! cluster's Services, each object cut down to its [`facts`] at once)
//! feeds the [`table`] (open intervals, ended intervals, staleness), which
//! [`run`] cuts into a [`segment`] at every period boundary, and earlier
//! when ended intervals reach the cap. While the API server is away the
//! table keeps its last state and every segment says `stale`; the watches
//! reconnect with backoff and list again. The journal runs in a container
//! of its own: it can neither block nor delay a capture's upload.

pub mod config;
pub mod errors;
pub mod facts;
pub mod segment;
pub mod table;
pub mod watch;

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::errors::RunError;
use crate::table::{Segment, Table};

/// Changes in flight between the watches and the table; a full channel
/// holds the watches back (the API server then buffers), never the table.
const CHANGES_IN_FLIGHT: usize = 1024;

/// Runs the journal until `shutdown` completes, then writes the segment in
/// progress and returns.
///
/// Without a client (no token, no kubeconfig: `client` is the reason) the
/// journal still runs and writes segments that say `stale` with that
/// reason, so that the bucket shows why a node has no names, and the pod
/// goes on capturing and uploading.
pub async fn run(
    config: Config,
    client: Result<kube::Client, String>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    config.spool.create_folders()?;
    segment::remove_leftovers(&config.spool.journal());
    let (tx, mut rx) = mpsc::channel(CHANGES_IN_FLIGHT);
    let mut watches = tokio::task::JoinSet::new();
    match client {
        Ok(client) => {
            watches.spawn(watch::pods(
                client.clone(),
                config.node.clone(),
                config.labels.clone(),
                tx.clone(),
                config.reconnect,
            ));
            watches.spawn(watch::services(client, tx.clone(), config.reconnect));
        }
        Err(reason) => {
            tracing::error!(error = %reason, "no Kubernetes client: every journal segment says stale until the container is given a token (in a pod) or KUBECONFIG (outside)");
            for stream in [table::Stream::Pods, table::Stream::Services] {
                let lost = table::Change::Lost {
                    stream,
                    reason: reason.clone(),
                };
                let _ = tx.send((lost, Utc::now())).await;
            }
        }
    }
    // Keeps the channel open when no watch runs.
    let _keep = tx;
    tracing::info!(
        node = %config.node,
        period = ?config.period,
        labels = %config.labels.names().join(","),
        spool = %config.spool.root().display(),
        "journal started: watching this node's pods and the cluster's Services"
    );
    let mut table = Table::new(&config.node, Utc::now(), config.max_records);
    let mut boundary = next_boundary(Utc::now(), config.period);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let wait = (boundary - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            change = rx.recv() => {
                let Some((change, at)) = change else { break };
                table.apply(change, at);
                if table.needs_cut() {
                    flush(&config, &table.cut(Utc::now()));
                }
            }
            () = tokio::time::sleep(wait) => {
                flush(&config, &table.cut(boundary));
                boundary = next_boundary(boundary, config.period);
            }
            () = &mut shutdown => break,
        }
    }
    watches.abort_all();
    flush(&config, &table.cut(Utc::now()));
    tracing::info!("journal stopped; the last segment is in the spool");
    Ok(())
}

/// Marks the journal alive for `journal --probe`.
fn touch(path: &std::path::Path) {
    let now = std::time::SystemTime::now();
    let touched = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(now));
    if let Err(e) = touched {
        tracing::warn!(path = %path.display(), error = %e, "cannot touch the journal heartbeat; the liveness probe will fail");
    }
}

/// The liveness probe: `Ok` when a segment was written within three
/// periods (at least 30 s), else what is wrong.
pub fn probe(config: &Config) -> Result<(), String> {
    let path = config.spool.journal_heartbeat();
    let limit = (config.period * 3).max(Duration::from_secs(30));
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map_err(|e| format!("no journal heartbeat at {}: {e}", path.display()))?;
    let age = modified.elapsed().unwrap_or(Duration::ZERO);
    if age > limit {
        return Err(format!(
            "the journal wrote no segment for {}s (limit {}s): its loop is stuck",
            age.as_secs(),
            limit.as_secs()
        ));
    }
    Ok(())
}

/// The first multiple of `period` (since the epoch, UTC) after `now`.
pub fn next_boundary(now: DateTime<Utc>, period: Duration) -> DateTime<Utc> {
    let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1);
    let now_ms = now.timestamp_millis();
    let next = (now_ms.div_euclid(period_ms) + 1).saturating_mul(period_ms);
    DateTime::from_timestamp_millis(next).unwrap_or(now + TimeDelta::seconds(1))
}

/// Writes a segment and keeps the folder in budget. A failure is logged,
/// not fatal: the next segment repeats every interval still open.
fn flush(config: &Config, segment: &Segment) {
    let dir = config.spool.journal();
    let records = segment.lines.len();
    let stale = segment.header.stale;
    match segment::write(&dir, segment) {
        Ok((path, bytes)) => {
            touch(&config.spool.journal_heartbeat());
            tracing::debug!(file = %path.display(), records, bytes, stale, "journal segment written");
            if stale {
                tracing::info!(
                    file = %path.display(),
                    since = ?segment.header.stale_since,
                    reason = segment.header.stale_reason.as_deref().unwrap_or(""),
                    "journal segment written stale: the API server's current state was not known for all of it"
                );
            }
        }
        Err(e) => tracing::error!(error = %e, "journal segment lost"),
    }
    match segment::keep_within(&dir, config.max_spool_bytes) {
        Ok(dropped) => {
            for name in dropped {
                tracing::warn!(
                    file = name,
                    max_bytes = config.max_spool_bytes,
                    "dropped the oldest journal segment unsent to keep journal/ under JOURNAL_MAX_MB (is the uploader shipping?)"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot measure journal/"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn segments_start_at_multiples_of_the_period() {
        let at = DateTime::parse_from_rfc3339("2026-11-27T14:25:03.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let next = next_boundary(at, Duration::from_secs(60));
        assert_eq!(next.to_rfc3339(), "2026-11-27T14:26:00+00:00");
        assert_eq!(
            next_boundary(next, Duration::from_secs(60)).to_rfc3339(),
            "2026-11-27T14:27:00+00:00"
        );
    }
}
