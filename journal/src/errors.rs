//! The journal's errors, typed where they arise.

use std::path::PathBuf;

/// A segment that could not be written into the spool.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot write journal segment {path}: {source}; check that the spool is mounted writable for the journal's group (fsGroup) and not full"
)]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// A setting that cannot be used; each names the variable to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "NODE_NAME (--node) is empty: set it from the downward API (env valueFrom.fieldRef.fieldPath: spec.nodeName), or pass the node's name"
    )]
    NoNode,
    #[error(
        "ROTATE_SECONDS (--rotate-seconds) is {0}: give a period of 1 to 86400 seconds, the capture's rotation"
    )]
    Period(u64),
    #[error(
        "JOURNAL_MAX_RECORDS (--max-records) is 0: give how many ended intervals a segment may hold before it is written early, e.g. 10000"
    )]
    MaxRecords,
}

/// Why the journal stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("spool is unusable: {0}")]
    Spool(#[from] spool::FolderError),
}
