//! Setting aside what `ready/` holds that is not a regular file: a FIFO, a
//! socket, a device, a symlink or a folder. Nothing the launcher does puts
//! one there, and reading one could block a hashing lane for ever (a FIFO)
//! or read outside the spool (a symlink). Each is moved, unread and
//! unfollowed, to `quarantine/` for a person to look at, logged and
//! counted (`quarantined_total`).

use std::path::Path;

use spool::SpoolLayout;

use crate::find;
use crate::metrics::Metrics;

/// Moves `path` to `quarantine/` if it is (still) not a regular file; a
/// regular file is left where it is (it was replaced by one meanwhile, and
/// the next scan takes it). Never follows a symlink: the link itself moves.
pub fn not_regular(spool: &SpoolLayout, path: &Path, metrics: &Metrics) {
    let what = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => return,
        Ok(meta) => find::describe(meta.file_type()),
        Err(_) => return,
    };
    match spool.quarantine_file(path) {
        Ok(target) => {
            metrics.quarantined.inc();
            tracing::warn!(
                file = %path.display(),
                quarantined = %target.display(),
                "ready/ holds {what}, not a capture file; moved to quarantine/ unread (only captures belong in ready/)"
            );
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "ready/ holds {what}, not a capture file, and it cannot be moved to quarantine/; it is skipped")
        }
    }
}
