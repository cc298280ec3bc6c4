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
