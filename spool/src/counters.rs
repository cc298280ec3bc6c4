//! What tcpdump's counters said about one capture: the packets the kernel
//! and the interface dropped while it was written, handed from the launcher
//! to the uploader in a small record per capture in `<spool>/counters/`.
//!
//! The launcher writes `counters/<ready name>` (atomically: a hidden
//! temporary file, then a rename) before the capture is renamed into
//! `ready/` under that name ([`crate::SpoolLayout::hand_over_with_counters`]);
//! the uploader reads it when it builds the capture's object metadata and
//! removes it with the capture (uploaded, or dropped by the budget). A
//! capture without a record (handed over after a crash, or by an older
//! launcher) simply has no drop counts.
//!
//! The counts are the differences of tcpdump's cumulative counters between
//! two of its answers to SIGUSR1: the last one read before the previous
//! capture was handed over and the last one read before this one was. So
//! the interval they cover ([`CaptureCounters::from`] to
//! [`CaptureCounters::to`], both in the record) is the capture's own
//! shifted earlier by up to the launcher's stats interval: a drop in the
//! last seconds of one capture may be counted in the next. Consecutive
//! captures of one tcpdump cover consecutive intervals, so no drop is
//! counted twice or left out.
//!
//! The record is a few `name value` lines, read with a size cap and never
//! through a symlink:
//!
//! ```text
//! dropped-by-kernel 12
//! dropped-by-interface 0
//! from-unix-ms 1796353559123
//! to-unix-ms 1796353619456
//! ```

use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The folder of the records, under the spool root.
pub const COUNTERS_DIR: &str = "counters";
/// A record is never read past this many bytes (a valid one is under 120).
pub const MAX_RECORD_BYTES: u64 = 512;
/// Prefix of the launcher's temporary files in [`COUNTERS_DIR`].
pub const TEMPORARY_PREFIX: &str = ".tmp-";

/// The drops counted during one capture, and the interval of the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureCounters {
    /// Packets the kernel dropped because tcpdump's buffer was full.
    pub dropped_by_kernel: u64,
    /// Packets the interface dropped (0 when capturing on `any`).
    pub dropped_by_interface: u64,
    /// The counters' first read, Unix milliseconds.
    pub from: u64,
    /// Their second read, Unix milliseconds.
    pub to: u64,
}

const KERNEL: &str = "dropped-by-kernel";
const INTERFACE: &str = "dropped-by-interface";
const FROM: &str = "from-unix-ms";
const TO: &str = "to-unix-ms";

impl CaptureCounters {
    /// The record's text.
    pub fn to_text(&self) -> String {
        format!(
            "{KERNEL} {}\n{INTERFACE} {}\n{FROM} {}\n{TO} {}\n",
            self.dropped_by_kernel, self.dropped_by_interface, self.from, self.to
        )
    }

    /// Reads a record's text; `None` when a field is missing or not a
    /// number.
    pub fn from_text(text: &str) -> Option<Self> {
        let mut fields = [None; 4];
        for line in text.lines() {
            let (name, value) = line.split_once(' ')?;
            let slot = [KERNEL, INTERFACE, FROM, TO]
                .iter()
                .position(|n| *n == name)?;
            fields[slot] = Some(value.trim().parse::<u64>().ok()?);
        }
        let [Some(k), Some(i), Some(from), Some(to)] = fields else {
            return None;
        };
        Some(Self {
            dropped_by_kernel: k,
            dropped_by_interface: i,
            from,
            to,
        })
    }
}

/// The record of the capture named `ready_name` in `ready/`.
pub fn record_path(counters_dir: &Path, ready_name: &str) -> PathBuf {
    counters_dir.join(ready_name)
}

/// The record of a capture given by its path in `<spool>/ready/`.
pub fn record_of_ready_capture(ready_capture: &Path) -> Option<PathBuf> {
    let name = ready_capture.file_name()?.to_str()?;
    let root = ready_capture.parent()?.parent()?;
    Some(record_path(&root.join(COUNTERS_DIR), name))
}

/// Writes the record atomically, replacing any older one of that name.
pub fn write(counters_dir: &Path, ready_name: &str, counters: &CaptureCounters) -> io::Result<()> {
    let temporary = counters_dir.join(format!("{TEMPORARY_PREFIX}{ready_name}"));
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&temporary)
        .and_then(|mut file| file.write_all(counters.to_text().as_bytes()));
    let renamed =
        written.and_then(|()| std::fs::rename(&temporary, record_path(counters_dir, ready_name)));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    renamed
}

/// Reads a record: `None` when there is none, or it is a symlink, not a
/// regular file, too long or not a record.
pub fn read(record: &Path) -> Option<CaptureCounters> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(record)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_RECORD_BYTES + 1)
        .read_to_string(&mut text)
        .ok()?;
    if text.len() as u64 > MAX_RECORD_BYTES {
        return None;
    }
    CaptureCounters::from_text(&text)
}

/// Removes a record; one already gone is fine.
pub fn remove(record: &Path) -> io::Result<()> {
    match std::fs::remove_file(record) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the records (and temporary files) in `counters_dir` whose
/// capture is not in `ready_dir`: left by a crash between a capture's
/// removal and its record's. Returns how many went. Call only while no
/// capture is being handed over (the launcher, at start).
pub fn remove_orphans(counters_dir: &Path, ready_dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(counters_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let orphan = match name.to_str() {
            Some(name) if !name.starts_with(TEMPORARY_PREFIX) => {
                std::fs::symlink_metadata(ready_dir.join(name)).is_err()
            }
            _ => true,
        };
        let kind = entry.file_type()?;
        if (orphan && kind.is_file()) || kind.is_symlink() {
            remove(&entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTED: CaptureCounters = CaptureCounters {
        dropped_by_kernel: 12,
        dropped_by_interface: 3,
        from: 1_796_353_559_123,
        to: 1_796_353_619_456,
    };

    #[test]
    fn a_record_reads_back_as_written_and_replaces_an_older_one() {
        let dir = tempfile::tempdir().unwrap();
        let older = CaptureCounters {
            dropped_by_kernel: 1,
            ..COUNTED
        };
        write(dir.path(), "20261127T142503Z.pcap", &older).unwrap();
        write(dir.path(), "20261127T142503Z.pcap", &COUNTED).unwrap();
        let record = record_path(dir.path(), "20261127T142503Z.pcap");
        assert_eq!(read(&record), Some(COUNTED));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn symlinks_oversized_and_foreign_records_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, COUNTED.to_text()).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(read(&link), None);
        let long = dir.path().join("long");
        let padded = format!("{}{}", COUNTED.to_text(), " ".repeat(600));
        std::fs::write(&long, padded).unwrap();
        assert_eq!(read(&long), None);
        let foreign = dir.path().join("foreign");
        std::fs::write(&foreign, "dropped-by-kernel many\n").unwrap();
        assert_eq!(read(&foreign), None);
        assert_eq!(read(&dir.path().join("absent")), None);
        assert_eq!(read(dir.path()), None);
    }

    #[test]
    fn orphan_records_are_swept_and_those_of_ready_captures_kept() {
        let root = tempfile::tempdir().unwrap();
        let (ready, counters) = (root.path().join("ready"), root.path().join(COUNTERS_DIR));
        std::fs::create_dir(&ready).unwrap();
        std::fs::create_dir(&counters).unwrap();
        std::fs::write(ready.join("20261127T142503Z.pcap"), b"capture").unwrap();
        for name in ["20261127T142503Z.pcap", "20261127T142403Z.pcap"] {
            write(&counters, name, &COUNTED).unwrap();
        }
        std::fs::write(counters.join(".tmp-20261127T142603Z.pcap"), b"half").unwrap();
        assert_eq!(remove_orphans(&counters, &ready).unwrap(), 2);
        let left: Vec<_> = std::fs::read_dir(&counters)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["20261127T142503Z.pcap"]);
    }

    #[test]
    fn the_record_of_a_ready_capture_is_in_the_counters_folder_beside_ready() {
        assert_eq!(
            record_of_ready_capture(Path::new("/spool/ready/20261127T142503Z.pcap")),
            Some(PathBuf::from("/spool/counters/20261127T142503Z.pcap"))
        );
    }
}
