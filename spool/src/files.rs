//! Which files in a spool folder are captures: regular files with capture
//! names. Symlinks are never followed (so nothing outside the spool is ever
//! taken), and hidden, temporary and foreign names are left alone.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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

impl SpoolLayout {
    /// The finished captures in `ready/`, oldest first.
    pub fn ready_captures(&self) -> io::Result<Vec<CaptureFile>> {
        captures_in(&self.ready(), CaptureName::parse_ready)
    }

    /// The files tcpdump wrote in `active/`, oldest first.
    pub fn active_captures(&self) -> io::Result<Vec<CaptureFile>> {
        captures_in(&self.active(), CaptureName::parse_active)
    }
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
) -> io::Result<Vec<CaptureFile>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(folder)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().and_then(|n| parse(n).ok()) else {
            continue;
        };
        let path = entry.path();
        // Not `metadata`: a symlink is never followed.
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_file() {
            found.push(CaptureFile {
                name,
                path,
                size: meta.len(),
            });
        }
    }
    found.sort_by_key(|c| c.name);
    Ok(found)
}
