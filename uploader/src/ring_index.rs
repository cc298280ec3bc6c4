//! `--upload-mode pinned-with-index`: the ring's captures (no pin covers
//! them) stay on the node, but each one's flow index goes to the bucket as
//! soon as the capture is ready, once. `captures find` then searches the
//! node's whole history, and `captures fetch` names what was never shipped.
//! Which indexes are in the bucket is kept in the pins' local copy, so a
//! restart does not send them again.

use std::collections::BTreeSet;

use crate::failure::FailureKind;
use crate::find::{self, Capture};
use crate::ship::Shipper;

/// One pass over `ready/`: ships the index of every ring capture not yet
/// indexed, oldest first. Returns the captures whose index could not be
/// shipped (tried again at the next pass).
pub async fn ship_pending(shipper: &Shipper) -> Vec<String> {
    let Some(book) = shipper
        .pins
        .as_ref()
        .filter(|_| shipper.config.upload_mode.ships_ring_indexes())
    else {
        return Vec::new();
    };
    let found = match find::scan(&shipper.config.spool) {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(path = %shipper.config.spool.ready().display(), error = %e, "cannot scan ready/ for captures to index");
            return Vec::new();
        }
    };
    let in_ready: BTreeSet<String> = found.captures.iter().map(Capture::file_name).collect();
    book.retain_indexed(&in_ready);
    let (_, ring) = book.split(found.captures);
    let mut failed = Vec::new();
    let mut changed = false;
    for (capture, _) in ring {
        let file = capture.file_name();
        if book.is_indexed(&file) {
            continue;
        }
        match shipper.ship_ring_index(&capture).await {
            Ok(()) => {
                book.indexed(&file);
                changed = true;
            }
            // Expired from the ring meanwhile.
            Err(e) if e.kind == FailureKind::Gone => {}
            Err(e) => {
                tracing::warn!(file, kind = %e.kind, error = %e.detail, "flow index of a capture kept on the node not shipped; trying again at the next pass");
                failed.push(file);
            }
        }
    }
    if changed && let Err(e) = book.save() {
        tracing::warn!(error = %e, "cannot save the local copy of the pins (which indexes are shipped); a restart sends them again");
    }
    failed
}
