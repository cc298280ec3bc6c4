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
pub async fn run(
    config: Config,
    client: kube::Client,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    config.spool.create_folders()?;
    let (tx, mut rx) = mpsc::channel(CHANGES_IN_FLIGHT);
    let mut watches = tokio::task::JoinSet::new();
    watches.spawn(watch::pods(
        client.clone(),
        config.node.clone(),
        config.labels.clone(),
        tx.clone(),
        config.reconnect,
    ));
    watches.spawn(watch::services(client, tx, config.reconnect));
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
                    flush(&config, table.cut(Utc::now()));
                }
            }
            () = tokio::time::sleep(wait) => {
                flush(&config, table.cut(boundary));
                boundary = next_boundary(boundary, config.period);
            }
            () = &mut shutdown => break,
        }
    }
    watches.abort_all();
    flush(&config, table.cut(Utc::now()));
    tracing::info!("journal stopped; the last segment is in the spool");
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
fn flush(config: &Config, segment: Segment) {
    let dir = config.spool.journal();
    let records = segment.lines.len();
    let stale = segment.header.stale;
    match segment::write(&dir, &segment) {
        Ok((path, bytes)) => {
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
                tracing::warn!(file = name, max_bytes = config.max_spool_bytes, "dropped the oldest journal segment unsent to keep journal/ under JOURNAL_MAX_MB (is the uploader shipping?)");
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
        let at = DateTime::parse_from_rfc3339("2026-11-27T14:25:03.5Z").unwrap().with_timezone(&Utc);
        let next = next_boundary(at, Duration::from_secs(60));
        assert_eq!(next.to_rfc3339(), "2026-11-27T14:26:00+00:00");
        assert_eq!(next_boundary(next, Duration::from_secs(60)).to_rfc3339(), "2026-11-27T14:27:00+00:00");
    }
}
