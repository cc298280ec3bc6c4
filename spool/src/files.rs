//! Which files in a spool folder are captures: regular files with capture
//! names. Symlinks are never followed (so nothing outside the spool is ever
//! taken), and hidden, temporary and foreign names are left alone. Also what
//! is *not* a capture: entries of `ready/` that are not regular files (for
//! the uploader to quarantine unread), and the strays the budget drops
//! before any capture.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::{CaptureName, NameError, SpoolLayout};

/// A capture file found in `active/` or `ready/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureFile {
    pub name: CaptureName,
    pub path: PathBuf,
    pub size: u64,
}

impl CaptureFile {
    /// The file's name in its folder.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// What one read of `ready/` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadyScan {
    /// The captures, oldest first.
    pub captures: Vec<CaptureFile>,
    /// Entries that are not regular files, whatever their names: FIFOs,
    /// sockets, devices, symlinks, folders. Nothing puts them there but a
    /// mistake or an attack; opening one could block or leave the spool.
    pub not_regular: Vec<PathBuf>,
}

impl SpoolLayout {
    /// The finished captures in `ready/`, oldest first.
    pub fn ready_captures(&self) -> io::Result<Vec<CaptureFile>> {
        Ok(self.scan_ready()?.captures)
    }

    /// The captures in `ready/`, and what there is not a regular file.
    pub fn scan_ready(&self) -> io::Result<ReadyScan> {
        captures_in(&self.ready(), CaptureName::parse_ready)
    }

    /// The files tcpdump wrote in `active/`, oldest first.
    pub fn active_captures(&self) -> io::Result<Vec<CaptureFile>> {
        Ok(captures_in(&self.active(), CaptureName::parse_active)?.captures)
    }

    /// Regular files that are not captures and never will be: everything in
    /// `quarantine/`, and files in `ready/` without a capture name. They
    /// count against the volume's limit like captures, but nothing uploads
    /// them, so the budget drops them before any capture. Oldest
    /// (modification time) first; unreadable folders count as empty.
    pub fn strays(&self) -> Vec<StrayFile> {
        let mut strays = Vec::new();
        for (folder, is_stray) in [
            (self.quarantine(), (|_: &str| true) as fn(&str) -> bool),
            (self.ready(), |name: &str| {
                CaptureName::parse_ready(name).is_err()
            }),
        ] {
            let Ok(entries) = fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !is_stray(&name.to_string_lossy()) {
                    continue;
                }
                // `DirEntry::metadata` does not follow symlinks.
                if let Ok(meta) = entry.metadata()
                    && meta.file_type().is_file()
                {
                    strays.push(StrayFile {
                        path: entry.path(),
                        size: meta.len(),
                        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    });
                }
            }
        }
        strays.sort_by_key(|s| s.modified);
        strays
    }
}

/// What [`SpoolLayout::drop_strays`] deleted, and the error it stopped at.
#[derive(Debug, Default)]
pub struct StraysDropped {
    pub dropped: Vec<StrayFile>,
    pub error: Option<(PathBuf, io::Error)>,
}

impl SpoolLayout {
    /// Deletes strays (see [`strays`](Self::strays)), oldest first, while
    /// `bytes` (the spool's usage) is over `max_bytes`: they are never
    /// uploaded, so the budget takes them before any capture. Stops at the
    /// first file that cannot be deleted; one already gone is skipped.
    pub fn drop_strays(&self, mut bytes: u64, max_bytes: u64) -> StraysDropped {
        let mut outcome = StraysDropped::default();
        if bytes <= max_bytes {
            return outcome;
        }
        for stray in self.strays() {
            if bytes <= max_bytes {
                break;
            }
            match fs::remove_file(&stray.path) {
                Ok(()) => {
                    bytes = bytes.saturating_sub(stray.size);
                    outcome.dropped.push(stray);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    outcome.error = Some((stray.path, e));
                    break;
                }
            }
        }
        outcome
    }
}

/// A regular file in the spool that is not a capture (see
/// [`SpoolLayout::strays`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrayFile {
    pub path: PathBuf,
    pub size: u64,
    pub modified: SystemTime,
}

/// Files and bytes the spool holds: every regular file in its folders,
/// whatever its name, since all of them count against the volume's limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub files: u64,
    pub bytes: u64,
}

impl SpoolLayout {
    /// What the spool's folders hold (unreadable folders count as empty).
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for dir in [self.active(), self.ready(), self.quarantine()] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                // `DirEntry::metadata` does not follow symlinks.
                if let Ok(meta) = entry.metadata()
                    && meta.file_type().is_file()
                {
                    usage.files += 1;
                    usage.bytes += meta.len();
                }
            }
        }
        usage
    }

    /// Whether no capture is waiting in `ready/` or being written in
    /// `active/` (strays and quarantined files do not count: they are never
    /// uploaded, so waiting for them would only hold up a shutdown).
    pub fn is_drained(&self) -> bool {
        let empty =
            |found: io::Result<Vec<CaptureFile>>| found.map(|c| c.is_empty()).unwrap_or(true);
        empty(self.ready_captures()) && empty(self.active_captures())
    }

    /// The captures still in `ready/` and `active/`, as `folder/name`.
    pub fn leftovers(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (label, found) in [
            ("ready", self.ready_captures()),
            ("active", self.active_captures()),
        ] {
            for capture in found.unwrap_or_default() {
                names.push(format!("{label}/{}", capture.file_name()));
            }
        }
        names
    }
}

fn captures_in(
    folder: &Path,
    parse: fn(&str) -> Result<CaptureName, NameError>,
) -> io::Result<ReadyScan> {
    let mut found = ReadyScan::default();
    for entry in fs::read_dir(folder)? {
        let entry = entry?;
        let path = entry.path();
        // Not `metadata`: a symlink is never followed.
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.file_type().is_file() {
            found.not_regular.push(path);
            continue;
        }
        let Some(name) = entry.file_name().to_str().and_then(|n| parse(n).ok()) else {
            continue;
        };
        found.captures.push(CaptureFile {
            name,
            path,
            size: meta.len(),
        });
    }
    found.captures.sort_by_key(|c| c.name);
    found.not_regular.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strays_are_quarantined_files_and_foreign_names_in_ready_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
        let old = spool.quarantine().join("not-a-pcap");
        fs::write(&old, vec![0u8; 10]).unwrap();
        let past = SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(past)
            .unwrap();
        fs::write(spool.ready().join("notes.txt"), b"junk").unwrap();
        fs::write(spool.ready().join("20261127T142503Z.pcap"), b"a capture").unwrap();
        fs::write(
            spool.active().join("20261127T142504Z.pcap"),
            b"being written",
        )
        .unwrap();
        std::os::unix::fs::symlink(&old, spool.ready().join("link")).unwrap();
        let strays: Vec<PathBuf> = spool.strays().into_iter().map(|s| s.path).collect();
        assert_eq!(strays, [old, spool.ready().join("notes.txt")]);
    }

    #[test]
    fn a_scan_of_ready_names_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
        fs::write(spool.ready().join("20261127T142503Z.pcap"), b"a capture").unwrap();
        let fifo = spool.ready().join("20261127T142504Z.pcap");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let link = spool.ready().join("elsewhere");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        let scan = spool.scan_ready().unwrap();
        assert_eq!(scan.captures.len(), 1);
        assert_eq!(scan.not_regular, [fifo, link]);
    }
}
