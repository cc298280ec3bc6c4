//! Which files tcpdump has closed, from the facts: the kernel's
//! `IN_CLOSE_WRITE` for a file in `active/`, and, where the launcher may
//! read it, tcpdump's own descriptor table (`/proc/<pid>/fd`).
//!
//! Name order is not a fact: a clock stepped backwards or a stray file can
//! sort after the file tcpdump is writing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use futures::StreamExt as _;
use inotify::{EventMask, EventStream, Inotify, WatchMask};

use crate::errors::LaunchError;

/// Names of files closed after writing in one folder.
#[derive(Debug)]
pub struct ClosedFiles {
    events: EventStream<[u8; 4096]>,
}

/// What the watch reported.
#[derive(Debug)]
pub enum Closed {
    /// A file in the folder was closed after being written.
    File(OsString),
    /// Events were lost (queue overflow): look at every file.
    Overflow,
}

impl ClosedFiles {
    /// Starts watching `folder`; call before tcpdump starts.
    pub fn watch(folder: &Path) -> Result<Self, LaunchError> {
        let error = |source| LaunchError::Watch {
            path: folder.to_owned(),
            source,
        };
        let inotify = Inotify::init().map_err(error)?;
        inotify
            .watches()
            .add(folder, WatchMask::CLOSE_WRITE)
            .map_err(error)?;
        let events = inotify.into_event_stream([0u8; 4096]).map_err(error)?;
        Ok(Self { events })
    }

    /// The next close; pending forever if the watch ends.
    pub async fn next(&mut self) -> Closed {
        loop {
            match self.events.next().await {
                Some(Ok(event)) if event.mask.contains(EventMask::Q_OVERFLOW) => {
                    return Closed::Overflow;
                }
                Some(Ok(event)) => {
                    if let Some(name) = event.name {
                        return Closed::File(name);
                    }
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "watch on active/ failed; files are handed over when capture stops");
                    return std::future::pending().await;
                }
                None => return std::future::pending().await,
            }
        }
    }
}

/// The files process `pid` holds open, or `None` when its descriptor table
/// cannot be read (another user's process without CAP_SYS_PTRACE).
pub fn open_files(pid: u32) -> Option<Vec<PathBuf>> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        entries
            .flatten()
            .filter_map(|entry| std::fs::read_link(entry.path()).ok())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_open_files_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held");
        let _held = std::fs::File::create(&path).unwrap();
        let open = open_files(std::process::id()).unwrap();
        assert!(open.contains(&path), "{open:?}");
    }

    #[tokio::test]
    async fn closing_a_written_file_is_reported_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut closed = ClosedFiles::watch(dir.path()).unwrap();
        std::fs::write(dir.path().join("a.pcap"), b"x").unwrap();
        match closed.next().await {
            Closed::File(name) => assert_eq!(name, "a.pcap"),
            Closed::Overflow => panic!("overflow"),
        }
    }
}
