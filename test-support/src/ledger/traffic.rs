//! The numbered traffic of a ledger run: one thread sending with
//! [`crate::numbered::send_paced`] in slices of a quarter second, at a rate
//! and payload size the run may change, pausable around capture restarts.
//! Each slice is remembered (first number, count, when), so a missing
//! number can be placed in time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::numbered::{numbered_payload, send_paced};

const SLICE: Duration = Duration::from_millis(250);

/// Numbers sent in one slice, and when.
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    pub first: u64,
    pub count: u64,
    pub started: SystemTime,
    pub ended: SystemTime,
}

#[derive(Debug)]
struct Control {
    rate: AtomicU64,
    payload: AtomicU64,
    paused: AtomicBool,
    /// True while the sender is between slices with pause set.
    idle: AtomicBool,
    stop: AtomicBool,
    sent: AtomicU64,
    send_errors: AtomicU64,
    slices: Mutex<Vec<Slice>>,
}

#[derive(Debug)]
pub struct Traffic {
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl Traffic {
    /// Starts sending to 127.0.0.1:`port` at `rate` a second.
    pub fn start(port: u16, rate: u64) -> Self {
        let control = Arc::new(Control {
            rate: AtomicU64::new(rate),
            payload: AtomicU64::new(numbered_payload(0).len() as u64),
            paused: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            slices: Mutex::new(Vec::new()),
        });
        let sending = control.clone();
        let thread = std::thread::spawn(move || send_loop(port, &sending));
        Self {
            control,
            thread: Some(thread),
        }
    }

    /// Sets the rate and the UDP payload size of the next slices.
    pub fn set(&self, rate: u64, payload: usize) {
        self.control.rate.store(rate, Ordering::SeqCst);
        self.control.payload.store(payload as u64, Ordering::SeqCst);
    }

    /// Stops sending after the slice in progress; returns once it ended.
    pub fn pause(&self) {
        self.control.paused.store(true, Ordering::SeqCst);
        while !self.control.idle.load(Ordering::SeqCst) && self.thread.is_some() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn resume(&self) {
        self.control.idle.store(false, Ordering::SeqCst);
        self.control.paused.store(false, Ordering::SeqCst);
    }

    /// Stops for good; returns the numbers sent (`0..sent`).
    pub fn stop(&mut self) -> u64 {
        self.control.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.sent()
    }

    pub fn sent(&self) -> u64 {
        self.control.sent.load(Ordering::SeqCst)
    }

    pub fn send_errors(&self) -> u64 {
        self.control.send_errors.load(Ordering::SeqCst)
    }

    pub fn slices(&self) -> Vec<Slice> {
        self.control
            .slices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop();
    }
}

fn send_loop(port: u16, control: &Control) {
    while !control.stop.load(Ordering::SeqCst) {
        if control.paused.load(Ordering::SeqCst) {
            control.idle.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        control.idle.store(false, Ordering::SeqCst);
        let rate = control.rate.load(Ordering::SeqCst).max(1);
        let payload = usize::try_from(control.payload.load(Ordering::SeqCst)).unwrap_or(0);
        let first = control.sent.load(Ordering::SeqCst);
        let count = (rate * SLICE.as_millis() as u64 / 1000).max(1);
        let started = SystemTime::now();
        let outcome = send_paced(port, first, count, rate, &[payload]);
        // Numbers are used whether or not the kernel took the datagram; a
        // refused send is reported apart from what the capture missed.
        control.sent.fetch_add(count, Ordering::SeqCst);
        control
            .send_errors
            .fetch_add(outcome.send_errors, Ordering::SeqCst);
        control
            .slices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Slice {
                first,
                count,
                started,
                ended: SystemTime::now(),
            });
    }
    control.idle.store(true, Ordering::SeqCst);
}

/// When number `n` was sent, about (within its slice).
pub fn sent_at(slices: &[Slice], n: u64) -> Option<SystemTime> {
    let index = slices.partition_point(|s| s.first + s.count <= n);
    let slice = slices.get(index).filter(|s| s.first <= n)?;
    let span = slice
        .ended
        .duration_since(slice.started)
        .unwrap_or_default();
    let fraction = (n - slice.first) as f64 / slice.count as f64;
    Some(slice.started + span.mul_f64(fraction))
}
