//! Shutdown: [`Signals`], which completes on SIGTERM or SIGINT, and the drain
//! that follows it.
//!
//! SIGTERM is how Kubernetes stops the pod: the capture container stops at
//! the same time and hands over its last file, so the uploader keeps
//! uploading until `ready/` and `active/` are both empty, or until
//! `--drain-timeout-seconds` pass (kept below the pod's grace period, after
//! which the kubelet sends SIGKILL). SIGINT is the same for a person at a
//! terminal.

use std::time::Duration;

use spool::SpoolLayout;
use tokio::signal::unix::{SignalKind, signal};

/// SIGTERM and SIGINT, caught from the moment this is made: made before
/// the admin port answers, so that a signal that comes as soon as the
/// probes pass still drains instead of killing the process (the default
/// action) before anything listens for it.
#[derive(Debug)]
pub struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers. Without them the default action (exit)
    /// applies, as it would anyway.
    pub fn install() -> Self {
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        if let Err(error) = term.as_ref().and(int.as_ref()) {
            tracing::warn!(%error, "could not catch SIGTERM/SIGINT: a stop will not drain the spool");
        }
        Self {
            term: term.ok(),
            int: int.ok(),
        }
    }

    /// Completes when SIGTERM or SIGINT arrives; returns its name.
    pub async fn requested(mut self) -> &'static str {
        let (Some(term), Some(int)) = (self.term.as_mut(), self.int.as_mut()) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}

/// Waits until the spool is drained (no capture in `ready/` or `active/`,
/// by the spool crate's rule: a stray file does not hold up the shutdown;
/// and no journal segment in `journal/`, whose last one the journal
/// container writes as it stops, before the uploader is stopped);
/// `false` if the deadline came first. In pinned mode `pinned_idle` says
/// whether the pinned captures are all shipped: the ring stays on the node
/// (no capture in `active/`, and nothing queued, is then drained).
pub async fn drain(
    spool: &SpoolLayout,
    deadline: Duration,
    pinned_idle: Option<&(dyn Fn() -> bool + Send + Sync)>,
) -> bool {
    let captures_done = || match pinned_idle {
        None => spool.is_drained(),
        Some(idle) => spool.active_captures().is_ok_and(|c| c.is_empty()) && idle(),
    };
    let drained = async {
        while !captures_done() || !crate::journal::pending(spool).is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(deadline, drained).await.is_ok()
}
