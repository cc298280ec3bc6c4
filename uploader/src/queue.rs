//! The hand-over between finding work and the upload workers: captures
//! waiting (oldest first) and captures being uploaded. Also where the spool
//! budget picks what to drop, under the same lock, so that a capture being
//! uploaded is never dropped.
//!
//! A capture whose turn failed is [deferred](Queue::defer): it waits in the
//! queue again, not handed out before its not-before time, with its own
//! count of failed turns (so its backoff grows while others keep moving),
//! and, waiting, it is one the budget may drop.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use spool::CaptureName;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::find::Capture;

#[derive(Debug, Default)]
pub struct Queue {
    inner: Mutex<Inner>,
    wake: Notify,
}

#[derive(Debug, Default)]
pub struct Inner {
    pub pending: BTreeMap<CaptureName, Capture>,
    pub in_flight: HashSet<CaptureName>,
    /// Captures whose last turn failed: kept while they are in `ready/`.
    deferred: HashMap<CaptureName, Deferral>,
    /// No more work will be added (`--once`).
    closed: bool,
}

/// A capture whose upload keeps failing.
#[derive(Debug, Clone, Copy)]
struct Deferral {
    /// Failed turns in a row.
    failed_turns: u32,
    not_before: Instant,
}

impl Queue {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces what is waiting with what a scan found.
    pub fn refresh(&self, found: Vec<Capture>) {
        let mut inner = self.lock();
        inner.pending = found
            .into_iter()
            .filter(|c| !inner.in_flight.contains(&c.name))
            .map(|c| (c.name, c))
            .collect();
        // What left `ready/` needs no deferral any more.
        let Inner {
            pending,
            in_flight,
            deferred,
            ..
        } = &mut *inner;
        deferred.retain(|name, _| pending.contains_key(name) || in_flight.contains(name));
        if !inner.pending.is_empty() {
            self.wake.notify_waiters();
        }
    }

    /// After this, `next` returns `None` once nothing is waiting.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_waiters();
    }

    /// The oldest waiting capture that is not deferred, now in flight.
    pub async fn next(&self) -> Option<Capture> {
        loop {
            let notified = self.wake.notified();
            let earliest = {
                let mut inner = self.lock();
                let now = Instant::now();
                let due = |name: &CaptureName| {
                    inner.deferred.get(name).is_none_or(|d| d.not_before <= now)
                };
                let first_due = inner.pending.keys().copied().find(|name| due(name));
                if let Some(name) = first_due
                    && let Some(capture) = inner.pending.remove(&name)
                {
                    inner.in_flight.insert(name);
                    return Some(capture);
                }
                if inner.closed && inner.pending.is_empty() {
                    return None;
                }
                inner
                    .pending
                    .keys()
                    .filter_map(|name| inner.deferred.get(name).map(|d| d.not_before))
                    .min()
            };
            match earliest {
                Some(at) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Puts a capture whose turn failed back in the queue, not to be handed
    /// out again before `delay(failed turns in a row)` has passed. Returns
    /// the failed turns and the delay.
    pub fn defer(&self, capture: Capture, delay: impl Fn(u32) -> Duration) -> (u32, Duration) {
        let mut inner = self.lock();
        let failed_turns = inner
            .deferred
            .get(&capture.name)
            .map_or(0, |d| d.failed_turns)
            .saturating_add(1);
        let wait = delay(failed_turns);
        inner.deferred.insert(
            capture.name,
            Deferral {
                failed_turns,
                not_before: Instant::now() + wait,
            },
        );
        inner.in_flight.remove(&capture.name);
        inner.pending.insert(capture.name, capture);
        drop(inner);
        // Waiting workers recompute when the earliest deferral is due.
        self.wake.notify_waiters();
        (failed_turns, wait)
    }

    /// The capture's turn ended for good (uploaded, gone, or given up on).
    pub fn finish(&self, name: &CaptureName) {
        let mut inner = self.lock();
        inner.in_flight.remove(name);
        inner.deferred.remove(name);
    }

    /// Start time of the oldest capture waiting or in flight.
    pub fn oldest(&self) -> Option<CaptureName> {
        let inner = self.lock();
        let pending = inner.pending.keys().next().copied();
        let flying = inner.in_flight.iter().min().copied();
        pending.into_iter().chain(flying).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(name: &str) -> Capture {
        Capture {
            name: CaptureName::parse_ready(name).unwrap(),
            path: std::path::PathBuf::from(name),
            size: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_deferred_capture_waits_its_turn_while_newer_ones_go_on() {
        let queue = Queue::default();
        queue.refresh(vec![
            capture("20261127T142501Z.pcap"),
            capture("20261127T142502Z.pcap"),
        ]);
        let failing = queue.next().await.unwrap();
        assert_eq!(failing.file_name(), "20261127T142501Z.pcap");
        let (turns, wait) =
            queue.defer(failing, |turns| Duration::from_secs(10 * u64::from(turns)));
        assert_eq!((turns, wait), (1, Duration::from_secs(10)));
        // A rescan meanwhile keeps the deferral.
        queue.refresh(vec![
            capture("20261127T142501Z.pcap"),
            capture("20261127T142502Z.pcap"),
        ]);
        let next = queue.next().await.unwrap();
        assert_eq!(
            next.file_name(),
            "20261127T142502Z.pcap",
            "the older one is deferred"
        );
        queue.finish(&next.name);

        let started = Instant::now();
        let again = queue.next().await.unwrap();
        assert_eq!(again.file_name(), "20261127T142501Z.pcap");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        let (turns, _) = queue.defer(again, |turns| Duration::from_secs(10 * u64::from(turns)));
        assert_eq!(turns, 2, "its backoff grows per failed turn");
    }

    #[test]
    fn a_deferred_capture_is_one_the_budget_may_drop() {
        let queue = Queue::default();
        queue.refresh(vec![capture("20261127T142501Z.pcap")]);
        let failing = queue.lock().pending.pop_first().unwrap().1;
        queue.lock().in_flight.insert(failing.name);
        queue.defer(failing, |_| Duration::from_secs(60));
        let inner = queue.lock();
        assert!(inner.in_flight.is_empty());
        assert!(
            inner
                .pending
                .contains_key(&CaptureName::parse_ready("20261127T142501Z.pcap").unwrap())
        );
    }
}
