//! Finding work: which captures in `ready/` are ours to upload, and a wake-up
//! whenever `ready/` changes.
//!
//! Only regular files whose names are capture names (the `spool` crate's rule)
//! are taken. Symlinks are never followed (`symlink_metadata`), so nothing
//! outside the spool is ever read; hidden, temporary and foreign names are
//! left alone. The watcher only wakes the scanner: a full scan is the truth,
//! which also covers events the kernel dropped on queue overflow.
//!
//! What the scan found is opened with [`open_capture`] only: an entry can be
//! replaced between the scan and the open, so the open itself refuses what
//! is not a regular file, without following a symlink or waiting on a FIFO.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecursiveMode, Watcher as _};
use prometheus_client::metrics::counter::Counter;
use spool::SpoolLayout;
use tokio::sync::Notify;

/// A capture waiting in `ready/` (which files count is the spool crate's
/// rule, shared with the launcher).
pub use spool::CaptureFile as Capture;

/// Logged when the kernel dropped watch events (the fault ledger counts it).
pub use spool::logging::counted::UPLOADER_WATCH_OVERFLOW as WATCH_OVERFLOW_LOG;

/// The captures in `ready/`, oldest first, and what there is not a
/// regular file (to be quarantined, see `quarantine.rs`).
pub fn scan(spool: &SpoolLayout) -> io::Result<spool::ReadyScan> {
    spool.scan_ready()
}

/// An entry of `ready/` that is not a regular file, found when opening it.
#[derive(Debug, thiserror::Error)]
#[error("{path} is not a regular file but {what}; it is never read")]
pub struct NotRegular {
    pub path: PathBuf,
    pub what: &'static str,
}

/// Opens a capture for reading: never follows a symlink (`O_NOFOLLOW`),
/// never waits for a FIFO's writer (`O_NONBLOCK`, which regular files
/// ignore), never takes a terminal (`O_NOCTTY`); then checks with `fstat`
/// that what was opened is a regular file. Anything else is an error whose
/// inner error is [`NotRegular`] (see [`is_not_regular`]).
pub fn open_capture(path: &Path) -> io::Result<File> {
    use nix::fcntl::OFlag;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
        .open(path)?;
    let file_type = file.metadata()?.file_type();
    if file_type.is_file() {
        return Ok(file);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        NotRegular {
            path: path.to_owned(),
            what: describe(file_type),
        },
    ))
}

/// Whether opening failed because the entry is not a regular file: a
/// symlink (`ELOOP` under `O_NOFOLLOW`), a socket (`ENXIO`), or anything
/// [`open_capture`] found with `fstat`.
pub fn is_not_regular(error: &io::Error) -> bool {
    use nix::errno::Errno;
    let errno = error.raw_os_error();
    errno == Some(Errno::ELOOP as i32)
        || errno == Some(Errno::ENXIO as i32)
        || error
            .get_ref()
            .is_some_and(|inner| inner.is::<NotRegular>())
}

/// What kind of entry a file type is, for logs.
pub fn describe(file_type: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a folder"
    } else if file_type.is_symlink() {
        "a symlink"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else {
        "of an unknown kind"
    }
}

/// Watches `ready/` and wakes `wake` when a capture may have arrived: a file
/// created or moved in, or a lost event (queue overflow, watch error). Lost
/// events are counted in `lost` and logged: nothing is missed (the scan that
/// follows reads the folder whole), but an operator should see a queue too
/// small for the spool's arrival rate (`fs.inotify.max_queued_events`).
///
/// Everything else is ignored, above all the scanner's own reads of
/// `ready/` (open, read, close of the folder and its files), which would
/// otherwise wake the scanner again and keep it spinning on an idle spool.
/// Removals are ignored too: the uploader deletes what it shipped, and a
/// wake-up per deletion would rescan the whole backlog once per file.
pub fn watch(
    ready: &Path,
    wake: Arc<Notify>,
    lost: Counter,
) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match &event {
            Ok(event) if event.need_rescan() => {
                let times = lost.inc() + 1;
                tracing::warn!(times, "{WATCH_OVERFLOW_LOG}");
            }
            Err(error) => {
                let times = lost.inc() + 1;
                tracing::warn!(times, %error, "watching ready/ failed; scanning ready/ in full");
            }
            Ok(_) => {}
        }
        if event.as_ref().map_or(true, may_add_a_capture) {
            wake.notify_one();
        }
    })?;
    watcher.watch(ready, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Whether a watch event can mean a new capture in `ready/`.
fn may_add_a_capture(event: &notify::Event) -> bool {
    use notify::EventKind;
    use notify::event::{CreateKind, ModifyKind, RenameMode};
    event.need_rescan()
        || matches!(
            event.kind,
            EventKind::Create(CreateKind::File | CreateKind::Any)
                | EventKind::Modify(ModifyKind::Name(
                    RenameMode::To | RenameMode::Both | RenameMode::Any
                ))
                | EventKind::Any
        )
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn scan_takes_regular_capture_files_only_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        fs::write(&secret, b"do not read").unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
        let ready = spool.ready();
        fs::write(ready.join("20261127T142504Z.pcap"), b"b").unwrap();
        fs::write(ready.join("20261127T142503Z.pcap"), b"a").unwrap();
        fs::write(ready.join(".20261127T142502Z.pcap"), b"hidden").unwrap();
        fs::write(ready.join("20261127T142502Z.pcap.tmp"), b"tmp").unwrap();
        fs::write(ready.join("notes.txt"), b"junk").unwrap();
        fs::create_dir(ready.join("20261127T142501Z.pcap")).unwrap();
        std::os::unix::fs::symlink(&secret, ready.join("20261127T142500Z.pcap")).unwrap();
        let names: Vec<String> = scan(&spool)
            .unwrap()
            .captures
            .iter()
            .map(Capture::file_name)
            .collect();
        assert_eq!(names, ["20261127T142503Z.pcap", "20261127T142504Z.pcap"]);
    }

    /// A FIFO swapped in after the scan: opening it neither blocks (no
    /// writer will ever come) nor reads it; it is refused as not regular.
    #[test]
    fn a_fifo_swapped_into_ready_is_refused_without_blocking_the_hashing_lane() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("20261127T142503Z.pcap");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(crate::hash::hash_file(&fifo, None).map(|_| ()));
        });
        let error = result
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("hashing a FIFO blocked")
            .unwrap_err();
        assert!(is_not_regular(&error), "{error}");
        assert!(error.to_string().contains("a FIFO"), "{error}");
    }

    #[test]
    fn a_symlink_swapped_into_ready_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, b"outside the spool").unwrap();
        let link = dir.path().join("20261127T142503Z.pcap");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let error = crate::hash::hash_file(&link, None).unwrap_err();
        assert!(is_not_regular(&error), "{error}");
    }

    #[test]
    fn reading_ready_does_not_count_as_an_arrival() {
        use notify::event::{
            AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode,
        };
        use notify::{Event, EventKind};
        let arrivals = [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
        ];
        for kind in arrivals {
            assert!(may_add_a_capture(&Event::new(kind)), "{kind:?}");
        }
        let noise = [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Remove(RemoveKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
        ];
        for kind in noise {
            assert!(!may_add_a_capture(&Event::new(kind)), "{kind:?}");
        }
        let overflow = Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(may_add_a_capture(&overflow));
    }

    /// A watch whose queue holds one event, and 2,000 captures renamed into
    /// `ready/` at once: the kernel drops events; the loss is counted and
    /// still wakes the scanner, and the scan finds every capture.
    #[tokio::test]
    async fn an_overflowing_watch_queue_is_counted_and_still_wakes_the_scan() {
        let test = "an_overflowing_watch_queue_is_counted_and_still_wakes_the_scan";
        let root = nix::unistd::Uid::effective().is_root();
        if !test_support::present_or_skip(
            test,
            (!root).then(|| "lowering fs.inotify.max_queued_events needs root".to_owned()),
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
        let staging = dir.path().join("staging");
        fs::create_dir(&staging).unwrap();
        let names: Vec<String> = (0..2_000)
            .map(|i| format!("20261127T1425{:02}Z-{i:04}.pcap", i % 60))
            .collect();
        for name in &names {
            fs::write(staging.join(name), b"x").unwrap();
        }
        let wake = Arc::new(Notify::new());
        let lost = Counter::default();
        let watcher = {
            let _small = test_support::inotify::SmallInotifyQueue::lower_to(1).unwrap();
            watch(&spool.ready(), wake.clone(), lost.clone()).unwrap()
        };
        for name in &names {
            fs::rename(staging.join(name), spool.ready().join(name)).unwrap();
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), wake.notified())
            .await
            .expect("no wake-up after 2,000 arrivals");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while lost.get() == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(watcher);
        assert!(
            lost.get() > 0,
            "a one-event queue and 2,000 renames: the overflow must be counted"
        );
        assert_eq!(scan(&spool).unwrap().captures.len(), names.len());
    }
}
