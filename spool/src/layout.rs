use std::path::{Path, PathBuf};

/// Files tcpdump is still writing.
pub const ACTIVE_DIR: &str = "active";
/// Finished captures, waiting for the uploader.
pub const READY_DIR: &str = "ready";
/// The uploader's resume records.
pub const STATE_DIR: &str = "state";

/// The folders under one spool root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolLayout {
    root: PathBuf,
}

impl SpoolLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn active(&self) -> PathBuf {
        self.root.join(ACTIVE_DIR)
    }

    pub fn ready(&self) -> PathBuf {
        self.root.join(READY_DIR)
    }

    pub fn state(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// The three folders, in the order they are created.
    pub fn folders(&self) -> [PathBuf; 3] {
        [self.active(), self.ready(), self.state()]
    }
}

impl SpoolLayout {
    /// Moves a closed capture from `active/` into `ready/` under its
    /// canonical name, atomically and without ever replacing a file already
    /// there: if the name is taken, the next free sequence number is used.
    /// Returns the path in `ready/`.
    pub fn hand_over(
        &self,
        active_file: &Path,
        name: crate::CaptureName,
    ) -> std::io::Result<PathBuf> {
        use nix::fcntl::{RenameFlags, renameat2};
        let ready = self.ready();
        let mut candidate = name;
        loop {
            let target = ready.join(candidate.ready_file_name());
            match renameat2(
                None,
                active_file,
                None,
                &target,
                RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => return Ok(target),
                Err(nix::errno::Errno::EEXIST) => {
                    candidate = candidate.with_sequence(candidate.sequence() + 1);
                }
                Err(errno) => return Err(std::io::Error::from(errno)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CaptureName;

    #[test]
    fn hand_over_never_replaces_a_ready_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        for folder in spool.folders() {
            std::fs::create_dir(folder).unwrap();
        }
        let name = CaptureName::parse_active("20261127T142503Z.pcap").unwrap();
        let first = spool.active().join("20261127T142503Z.pcap");
        std::fs::write(&first, b"first").unwrap();
        let landed = spool.hand_over(&first, name).unwrap();
        assert_eq!(landed, spool.ready().join("20261127T142503Z.pcap"));

        std::fs::write(&first, b"second").unwrap();
        let landed_again = spool.hand_over(&first, name).unwrap();
        assert_eq!(
            landed_again,
            spool.ready().join("20261127T142503Z-0001.pcap")
        );
        assert_eq!(std::fs::read(&landed).unwrap(), b"first");
        assert_eq!(std::fs::read(&landed_again).unwrap(), b"second");
        assert!(!first.exists());
    }
}
