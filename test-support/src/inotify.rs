//! A small inotify event queue for one process under test. The kernel copies
//! `fs.inotify.max_queued_events` into an inotify instance when it is
//! created, so the limit is lowered, the process makes its watch, and the
//! limit is put back: the machine-wide setting is low for that moment only,
//! and the process keeps its small queue, which a burst of files overflows.

use std::path::Path;
use std::time::{Duration, Instant};

const MAX_QUEUED_EVENTS: &str = "/proc/sys/fs/inotify/max_queued_events";

/// The lowered limit; dropping it restores the one it replaced.
#[derive(Debug)]
pub struct SmallInotifyQueue {
    previous: String,
}

impl SmallInotifyQueue {
    /// Lowers the limit to `events` (needs root).
    pub fn lower_to(events: u32) -> std::io::Result<Self> {
        let previous = std::fs::read_to_string(MAX_QUEUED_EVENTS)?;
        std::fs::write(MAX_QUEUED_EVENTS, events.to_string())?;
        Ok(Self { previous })
    }
}

impl Drop for SmallInotifyQueue {
    fn drop(&mut self) {
        let _ = std::fs::write(MAX_QUEUED_EVENTS, self.previous.trim());
    }
}

/// Whether process `pid` holds an inotify instance (one of its descriptors
/// is `anon_inode:inotify`).
pub fn holds_inotify_instance(pid: u32) -> bool {
    let Ok(fds) = std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == "anon_inode:inotify")
    })
}

/// Waits until `pid` holds an inotify instance, for `limit` at most.
pub fn wait_for_inotify_instance(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if holds_inotify_instance(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
