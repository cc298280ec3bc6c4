//! The spool contract: the one place that says how the capture side hands
//! finished captures to the uploader.
//!
//! ```text
//! <spool>/
//!   active/   files tcpdump is still writing (tcpdump's own names)
//!   ready/    finished, valid pcap files; owned by the uploader from the
//!             moment they appear; they only ever arrive by an atomic rename
//!             from active/ (same filesystem)
//!   state/    the uploader's resume records for multipart uploads
//!   quarantine/  files found in active/ that are not captures (not a
//!             pcap, or a foreign name); kept for a person, never uploaded
//!   journal/  the identity journal's segments, one per rotation period,
//!             written by the journal container, uploaded and deleted by
//!             the uploader
//!   journal.heartbeat  touched by the journal container at every segment;
//!             its liveness probe reads its age
//!   counters/ one small record per capture in ready/, same name: the
//!             packets dropped while it was written ([`counters`]); written
//!             by the launcher before the capture's rename, removed by the
//!             uploader with the capture
//!   capture.heartbeat  touched by the launcher whenever tcpdump is seen
//!             writing; the capture container's liveness probe reads its age
//! ```
//!
//! Every capture name carries the UTC time the capture started, so no later
//! stage needs to know when a file was uploaded: `20261127T142503Z.pcap`, or
//! `20261127T142503Z-0001.pcap` for the second file of a period that
//! tcpdump's `-C` size limit split.
//!
//! What the objects in the bucket are called and carry is the `bucket`
//! crate's contract, not this one's.
//!
//! Both binaries keep the spool within its size by one rule, [`budget`].
//!
//! Both binaries also share their edge here: [`logging`] (log set-up, the
//! last line, the exit codes).

pub mod budget;
pub mod counters;
mod files;
mod layout;
pub mod logging;
mod mark;
mod name;
pub mod pcap;
pub mod tick;

pub use files::{CaptureFile, ReadyScan, StrayFile, StraysDropped, Usage};
pub use layout::{
    ACTIVE_DIR, FOLDER_MODE, FolderError, HEARTBEAT_FILE, JOURNAL_DIR, JOURNAL_HEARTBEAT_FILE,
    LAST_HANDED_OVER_FILE, QUARANTINE_DIR, READY_DIR, STATE_DIR, SpoolLayout, resume_record_path,
};
pub use mark::{UPLOAD_DSCP, UPLOAD_TOS, upload_connection_filter, upload_mark_filter};
pub use name::{CaptureName, NameError, TCPDUMP_FILE_PATTERN};
