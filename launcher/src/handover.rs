//! Moving closed capture files from `active/` to `ready/`.

use std::fs;
use std::path::PathBuf;

use spool::{CaptureFile, SpoolLayout};
use tracing::{error, info, warn};

use crate::errors::LaunchError;
use crate::trim::{Trimmed, trim_to_last_record};

/// Which files in `active/` are known to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// tcpdump is running: every file but the newest. tcpdump closes a file
    /// before it opens the next, so an older file is never written again.
    AllButNewest,
    /// tcpdump is not running: every file, each trimmed to its last whole
    /// record first (a killed tcpdump may have torn the last one).
    All,
}

/// Hands over the closed files; returns their paths in `ready/`.
pub fn hand_over_closed(spool: &SpoolLayout, closed: Closed) -> Result<Vec<PathBuf>, LaunchError> {
    let active = spool.active();
    let mut files = spool
        .active_captures()
        .map_err(|source| LaunchError::SpoolIo {
            path: active,
            source,
        })?;
    if closed == Closed::AllButNewest {
        files.pop();
    }
    let mut handed = Vec::with_capacity(files.len());
    for CaptureFile { name, path, .. } in files {
        if closed == Closed::All && !make_valid(&path)? {
            continue;
        }
        let target = spool
            .hand_over(&path, name)
            .map_err(|source| LaunchError::HandOver {
                path: path.clone(),
                source,
            })?;
        let bytes = fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
        info!(file = %target.display(), bytes, "capture ready");
        handed.push(target);
    }
    Ok(handed)
}

/// Trims a file that tcpdump may not have closed. Returns whether it is a
/// valid capture to hand over; a header-less file holds no packets and is
/// removed.
fn make_valid(path: &std::path::Path) -> Result<bool, LaunchError> {
    let outcome = trim_to_last_record(path).map_err(|source| LaunchError::HandOver {
        path: path.to_path_buf(),
        source,
    })?;
    match outcome {
        Trimmed::Valid { packets, cut_bytes } => {
            if cut_bytes > 0 {
                warn!(file = %path.display(), packets, cut_bytes, "trimmed a torn last record");
            }
            Ok(true)
        }
        Trimmed::NoHeader { bytes } => {
            info!(file = %path.display(), bytes, "removing a capture file that holds no packets");
            fs::remove_file(path).map_err(|source| LaunchError::HandOver {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(false)
        }
        Trimmed::NotPcap => {
            error!(file = %path.display(), "not a pcap file; left in active/ for inspection");
            Ok(false)
        }
    }
}
