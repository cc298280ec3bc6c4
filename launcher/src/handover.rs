//! Moving closed capture files from `active/` to `ready/`, and files that
//! are not captures to `quarantine/`.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use spool::{CaptureName, SpoolLayout};
use tracing::{error, info, warn};

use crate::errors::LaunchError;
use crate::metrics::Metrics;
use crate::stats::DropLedger;
use crate::trim::{Trimmed, trim_to_last_record};

/// Hands over one file tcpdump closed while running. Returns its size, or
/// `None` when there was nothing to hand over (a foreign name, already
/// gone, or quarantined). With a `ledger`, the capture carries the drops
/// counted since the capture before it.
pub fn hand_over_closed_file(
    spool: &SpoolLayout,
    file_name: &str,
    metrics: &Metrics,
    ledger: Option<&mut DropLedger>,
) -> Result<Option<u64>, LaunchError> {
    let path = spool.active().join(file_name);
    let Ok(name) = CaptureName::parse_active(file_name) else {
        // Not one of tcpdump's names: dealt with when capture stops.
        return Ok(None);
    };
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_file() => {}
        _ => return Ok(None),
    }
    if !starts_with_pcap_header(&path) {
        quarantine(
            spool,
            &path,
            "it does not start with a pcap header",
            metrics,
        );
        return Ok(None);
    }
    let (_, bytes) =
        move_to_ready(spool, &path, name, ledger).map_err(|source| LaunchError::HandOver {
            path: path.clone(),
            source,
        })?;
    metrics.handed_over(bytes);
    Ok(Some(bytes))
}

/// The atomic rename into `ready/`, logged; the new path and its size.
fn move_to_ready(
    spool: &SpoolLayout,
    path: &Path,
    name: CaptureName,
    ledger: Option<&mut DropLedger>,
) -> std::io::Result<(PathBuf, u64)> {
    let counters = ledger.map(DropLedger::next_capture);
    let target = spool.hand_over_with_counters(path, name, counters.as_ref())?;
    let bytes = fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
    match counters {
        Some(c) if c.dropped_by_kernel + c.dropped_by_interface > 0 => warn!(
            file = %target.display(),
            bytes,
            dropped_by_kernel = c.dropped_by_kernel,
            dropped_by_interface = c.dropped_by_interface,
            "capture ready; packets were dropped while it was written (raise --buffer-kib, shorten --snaplen or narrow the filter)"
        ),
        _ => info!(file = %target.display(), bytes, "capture ready"),
    }
    Ok((target, bytes))
}

/// Hands over every file in `active/` once tcpdump is not running (at
/// start, after a crash, and after it exits): each trimmed to its last
/// whole record first, since a killed tcpdump may have torn it. Goes on
/// past a file it cannot hand over; each is logged, and the count of them
/// is returned with the files handed over. With a `ledger` (the files of
/// the tcpdump that just exited), they carry its drop counts.
pub fn hand_over_all(
    spool: &SpoolLayout,
    metrics: &Metrics,
    mut ledger: Option<&mut DropLedger>,
) -> Result<HandedOver, LaunchError> {
    let active = spool.active();
    let entries = fs::read_dir(&active).map_err(|source| LaunchError::SpoolIo {
        path: active.clone(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    sort_in_capture_order(&mut names);
    let mut outcome = HandedOver::default();
    for file_name in names {
        let path = active.join(&file_name);
        let Ok(name) = CaptureName::parse_active(&file_name) else {
            quarantine(spool, &path, "its name is not a capture name", metrics);
            continue;
        };
        match make_valid(spool, &path, metrics) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                error!(file = %path.display(), error = %e, "cannot check this capture; going on with the others");
                outcome.failed += 1;
                continue;
            }
        }
        match move_to_ready(spool, &path, name, ledger.as_deref_mut()) {
            Ok((target, bytes)) => {
                metrics.handed_over(bytes);
                outcome.files.push(target);
            }
            Err(e) => {
                error!(file = %path.display(), error = %e, "cannot hand over this capture; going on with the others");
                outcome.failed += 1;
            }
        }
    }
    Ok(outcome)
}

/// Sorts file names of `active/` in the order tcpdump wrote them: by start,
/// then by `-C` piece (`….pcap2` before `….pcap10`, which text order would
/// swap), so that no piece is handed over after a later one and renamed
/// as if the clock had stepped back. Foreign names come first.
pub fn sort_in_capture_order(names: &mut [String]) {
    names.sort_unstable_by(|a, b| {
        let key = |n: &String| CaptureName::parse_active(n).ok();
        key(a).cmp(&key(b)).then_with(|| a.cmp(b))
    });
}

/// What [`hand_over_all`] did.
#[derive(Debug, Default)]
pub struct HandedOver {
    /// The captures now in `ready/`.
    pub files: Vec<PathBuf>,
    /// Captures that could not be checked or moved (each logged).
    pub failed: usize,
}

/// Trims a file that tcpdump may not have closed. Returns whether it is a
/// valid capture to hand over; a header-less file holds no packets and is
/// removed; a file that is not a pcap is quarantined.
fn make_valid(spool: &SpoolLayout, path: &Path, metrics: &Metrics) -> Result<bool, LaunchError> {
    let outcome = trim_to_last_record(path).map_err(|source| LaunchError::HandOver {
        path: path.to_path_buf(),
        source,
    })?;
    match outcome {
        Trimmed::Valid { packets, cut_bytes } => {
            if cut_bytes > 0 {
                warn!(file = %path.display(), packets, cut_bytes, "trimmed a torn or damaged tail");
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
            quarantine(spool, path, "it is not a pcap file", metrics);
            Ok(false)
        }
    }
}

fn quarantine(spool: &SpoolLayout, path: &Path, why: &str, metrics: &Metrics) {
    match spool.quarantine_file(path) {
        Ok(target) => {
            metrics.quarantined_files.inc();
            error!(file = %path.display(), quarantined = %target.display(), "not handed over because {why}; moved to quarantine/ for inspection")
        }
        Err(e) => {
            error!(file = %path.display(), error = %e, "not handed over because {why}, and cannot be moved to quarantine/")
        }
    }
}

/// Whether the file's first four bytes are a pcap magic number.
fn starts_with_pcap_header(path: &Path) -> bool {
    let mut start = [0u8; spool::pcap::HEADER_LEN];
    let read = fs::File::open(path).and_then(|mut f| f.read_exact(&mut start));
    read.is_ok() && spool::pcap::check_bytes(&start).damage.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_a_period_are_handed_over_in_the_order_tcpdump_wrote_them() {
        let mut names: Vec<String> = [
            "20261127T142603Z.pcap",
            "20261127T142503Z.pcap10",
            "20261127T142503Z.pcap2",
            "20261127T142503Z.pcap",
        ]
        .map(String::from)
        .to_vec();
        sort_in_capture_order(&mut names);
        assert_eq!(
            names,
            [
                "20261127T142503Z.pcap",
                "20261127T142503Z.pcap2",
                "20261127T142503Z.pcap10",
                "20261127T142603Z.pcap"
            ]
        );
    }
}
