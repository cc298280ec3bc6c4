//! The hand-over between finding work and the upload workers: captures
//! waiting (oldest first) and captures being uploaded. Also where the spool
//! budget picks what to drop, under the same lock, so that a capture being
//! uploaded is never dropped.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use spool::CaptureName;
use tokio::sync::Notify;

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
    /// No more work will be added (`--once`).
    closed: bool,
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
        if !inner.pending.is_empty() {
            self.wake.notify_waiters();
        }
    }

    /// After this, `next` returns `None` once nothing is waiting.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_waiters();
    }

    /// The oldest waiting capture, now in flight.
    pub async fn next(&self) -> Option<Capture> {
        loop {
            let notified = self.wake.notified();
            {
                let mut inner = self.lock();
                if let Some((name, capture)) = inner.pending.pop_first() {
                    inner.in_flight.insert(name);
                    return Some(capture);
                }
                if inner.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    pub fn finish(&self, name: &CaptureName) {
        self.lock().in_flight.remove(name);
    }

    /// Start time of the oldest capture waiting or in flight.
    pub fn oldest(&self) -> Option<CaptureName> {
        let inner = self.lock();
        let pending = inner.pending.keys().next().copied();
        let flying = inner.in_flight.iter().min().copied();
        pending.into_iter().chain(flying).min()
    }
}
