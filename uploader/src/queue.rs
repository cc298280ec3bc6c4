//! The hand-over between finding work and the upload workers: captures
//! waiting (oldest first) and captures being uploaded. The spool budget
//! takes what it drops from here ([`Queue::take_waiting`]), under the same
//! lock the workers take their captures with, so that a capture being
//! uploaded is never dropped.
//!
//! A capture whose turn failed is [deferred](Queue::defer): it waits in the
//! queue again, not handed out before its not-before time, with its own
//! count of [failed turns](Queue::failed_turns) (so the retry policy can
//! make its wait grow while others keep moving), and, waiting, it is one
//! the budget may drop.

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
struct Inner {
    pending: BTreeMap<CaptureName, Capture>,
    in_flight: HashSet<CaptureName>,
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
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The waiting captures, oldest first, each leaving the queue as it is
    /// taken from the iterator; those not taken stay. The queue is locked
    /// from the first capture taken until the iterator is dropped, so no
    /// worker starts on a capture meanwhile, and one in flight is never
    /// among them. For the budget, which drops what it takes.
    pub fn take_waiting(&self) -> TakeWaiting<'_> {
        TakeWaiting {
            queue: self,
            locked: None,
        }
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

    /// Failed turns in a row of a capture (0 when its last turn, if any,
    /// did not fail).
    pub fn failed_turns(&self, name: &CaptureName) -> u32 {
        self.lock().deferred.get(name).map_or(0, |d| d.failed_turns)
    }

    /// Puts a capture whose turn failed back in the queue, not to be handed
    /// out again before `wait` has passed. Returns its failed turns in a
    /// row.
    pub fn defer(&self, capture: Capture, wait: Duration) -> u32 {
        let mut inner = self.lock();
        let failed_turns = inner
            .deferred
            .get(&capture.name)
            .map_or(0, |d| d.failed_turns)
            .saturating_add(1);
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
        failed_turns
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

/// See [`Queue::take_waiting`].
#[derive(Debug)]
pub struct TakeWaiting<'a> {
    queue: &'a Queue,
    /// Taken lazily: a budget under its limit never locks the queue.
    locked: Option<MutexGuard<'a, Inner>>,
}

impl Iterator for TakeWaiting<'_> {
    type Item = Capture;

    fn next(&mut self) -> Option<Capture> {
        let queue = self.queue;
        let inner = self.locked.get_or_insert_with(|| queue.lock());
        let (name, capture) = inner.pending.pop_first()?;
        inner.deferred.remove(&name);
        Some(capture)
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
        assert_eq!(queue.failed_turns(&failing.name), 0);
        let turns = queue.defer(failing, Duration::from_secs(10));
        assert_eq!(turns, 1);
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
        assert_eq!(queue.failed_turns(&again.name), 1);
        let turns = queue.defer(again, Duration::from_secs(20));
        assert_eq!(
            turns, 2,
            "its failed turns are counted, for its backoff to grow"
        );
    }

    #[tokio::test]
    async fn a_deferred_capture_is_one_the_budget_may_drop() {
        let queue = Queue::default();
        queue.refresh(vec![capture("20261127T142501Z.pcap")]);
        let failing = queue.next().await.unwrap();
        queue.defer(failing, Duration::from_secs(60));
        let taken: Vec<_> = queue.take_waiting().map(|c| c.file_name()).collect();
        assert_eq!(taken, ["20261127T142501Z.pcap"]);
        assert_eq!(queue.oldest(), None, "a dropped capture stayed queued");
    }

    #[tokio::test]
    async fn the_budget_never_takes_a_capture_in_flight_and_leaves_what_it_did_not_take() {
        let queue = Queue::default();
        queue.refresh(vec![
            capture("20261127T142501Z.pcap"),
            capture("20261127T142502Z.pcap"),
            capture("20261127T142503Z.pcap"),
        ]);
        let uploading = queue.next().await.unwrap();
        assert_eq!(uploading.file_name(), "20261127T142501Z.pcap");

        let taken: Vec<_> = queue
            .take_waiting()
            .take(1)
            .map(|c| c.file_name())
            .collect();

        assert_eq!(taken, ["20261127T142502Z.pcap"], "oldest waiting first");
        let left = queue.next().await.unwrap();
        assert_eq!(left.file_name(), "20261127T142503Z.pcap");
    }
}
