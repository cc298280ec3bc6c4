//! Deleting a capture from the spool: after its upload was verified, or when
//! the spool budget drops it. The resume record goes with it.

use std::io;
use std::path::Path;

use crate::state;

/// Removes the capture and its resume record. A capture already gone is
/// fine: someone else (an operator) removed it.
pub fn remove_capture(path: &Path, record: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    state::remove(record)
}
