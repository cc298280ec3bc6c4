use std::path::{Path, PathBuf};

/// Files tcpdump is still writing.
pub const ACTIVE_DIR: &str = "active";
/// Finished captures, waiting for the uploader.
pub const READY_DIR: &str = "ready";
/// The uploader's resume records.
pub const STATE_DIR: &str = "state";
/// The uploader's local copy of its pins, in `state/` (pinned mode).
pub const PINS_CACHE_FILE: &str = "pins.json";
/// Files found in `active/` that are not captures (not a pcap, or a
/// foreign name): kept for a person to look at, never uploaded.
pub const QUARANTINE_DIR: &str = "quarantine";
/// The identity journal's segments (which pod or service held each
/// address, and when), one per rotation period: written by the journal
/// container (to a hidden temporary name, then renamed), uploaded and
/// deleted by the uploader. Names and contents are the `bucket` crate's
/// (`journal_keys`, `journal_record`).
pub const JOURNAL_DIR: &str = "journal";
/// Touched by the journal container whenever it writes a segment (once a
/// period); its age is what `journal --probe`, that container's liveness
/// probe, checks.
pub const JOURNAL_HEARTBEAT_FILE: &str = "journal.heartbeat";
/// Touched by the launcher whenever tcpdump shows a sign of capturing (see --capture-mode); its age is
/// what the capture container's liveness probe checks.
pub const HEARTBEAT_FILE: &str = "capture.heartbeat";
/// What the launcher has handed over to `ready/`, so that no capture name
/// (and so no object key) is ever given twice: the greatest name handed
/// over, and on a second line the highest sequence number any name got.
///
/// Capture names are start times: a tcpdump restarted in the second its
/// last file started would name its first file the same, and after the
/// wall clock steps back tcpdump names files as it did before the step.
/// Once the first file was uploaded and deleted from `ready/`, nothing else
/// would stop the second from getting the same object key and replacing
/// it. A name not later than the greatest gets a sequence number above
/// every one given so far instead. Kept in the spool, so a restarted
/// launcher container knows it too.
pub const LAST_HANDED_OVER_FILE: &str = "last-handed-over";

/// The resume record of the capture named `file_name`, in `state_dir`:
/// written by the uploader during a multipart upload, removed with the
/// capture (uploaded, or dropped by the budget).
pub fn resume_record_path(state_dir: &Path, file_name: &str) -> PathBuf {
    state_dir.join(format!("{file_name}.json"))
}

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

    pub fn quarantine(&self) -> PathBuf {
        self.root.join(QUARANTINE_DIR)
    }

    pub fn journal(&self) -> PathBuf {
        self.root.join(JOURNAL_DIR)
    }

    /// The per-capture drop counts ([`crate::counters`]).
    pub fn counters(&self) -> PathBuf {
        self.root.join(crate::counters::COUNTERS_DIR)
    }

    /// The drop-count record of the capture named `file_name` in `ready/`.
    pub fn counters_record(&self, file_name: &str) -> PathBuf {
        crate::counters::record_path(&self.counters(), file_name)
    }

    pub fn heartbeat(&self) -> PathBuf {
        self.root.join(HEARTBEAT_FILE)
    }

    pub fn journal_heartbeat(&self) -> PathBuf {
        self.root.join(JOURNAL_HEARTBEAT_FILE)
    }

    pub fn last_handed_over(&self) -> PathBuf {
        self.root.join(LAST_HANDED_OVER_FILE)
    }

    /// Where the uploader keeps the resume record of the capture named
    /// `file_name` in `ready/` (see [`resume_record_path`]).
    /// The uploader's local copy of its pins, in pinned mode (the
    /// flight recorder; the pins themselves live in the bucket).
    pub fn pins_cache(&self) -> PathBuf {
        self.state().join(PINS_CACHE_FILE)
    }

    pub fn resume_record(&self, file_name: &str) -> PathBuf {
        resume_record_path(&self.state(), file_name)
    }

    /// The folders, in the order they are created.
    pub fn folders(&self) -> [PathBuf; 6] {
        [
            self.active(),
            self.ready(),
            self.state(),
            self.quarantine(),
            self.journal(),
            self.counters(),
        ]
    }
}

/// Mode of the spool folders: group-writable and setgid, so every file in
/// them belongs to the spool's group (the pod's `fsGroup`) and both
/// containers' users, members of that group, can use them.
pub const FOLDER_MODE: u32 = 0o2775;

/// A spool folder that could not be created or made shared.
#[derive(Debug, thiserror::Error)]
#[error("spool folder {path} cannot be created or made group-writable: {source}")]
pub struct FolderError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl SpoolLayout {
    /// Creates whichever of the [`Self::folders`] is missing,
    /// with [`FOLDER_MODE`]. Either container may start first (the uploader,
    /// a native sidecar, usually does), so both call this. A folder that
    /// exists keeps its mode unless this user owns it.
    pub fn create_folders(&self) -> Result<(), FolderError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let euid = nix::unistd::Uid::effective();
        for folder in self.folders() {
            let error = |source| FolderError {
                path: folder.clone(),
                source,
            };
            match std::fs::create_dir(&folder) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(error(e)),
            }
            let metadata = std::fs::symlink_metadata(&folder).map_err(error)?;
            if !metadata.is_dir() {
                return Err(error(std::io::Error::other(
                    "it exists and is not a folder",
                )));
            }
            if metadata.uid() == euid.as_raw() || euid.is_root() {
                std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(FOLDER_MODE))
                    .map_err(error)?;
            }
        }
        Ok(())
    }

    /// Moves a file that is not a capture from `active/` into
    /// `quarantine/`, never replacing a file there. Returns its new path.
    pub fn quarantine_file(&self, file: &Path) -> std::io::Result<PathBuf> {
        use nix::fcntl::{RenameFlags, renameat2};
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut attempt = 0u32;
        loop {
            let target = match attempt {
                0 => self.quarantine().join(&name),
                n => self.quarantine().join(format!("{name}.{n}")),
            };
            match renameat2(None, file, None, &target, RenameFlags::RENAME_NOREPLACE) {
                Ok(()) => return Ok(target),
                Err(nix::errno::Errno::EEXIST) => attempt += 1,
                Err(errno) => return Err(std::io::Error::from(errno)),
            }
        }
    }

    /// Moves a closed capture from `active/` into `ready/` under its
    /// canonical name, atomically and without ever replacing a file already
    /// there: if the name is taken, the next free sequence number is used.
    /// Nor is a name reused that was handed over before (and may be
    /// uploaded and gone from `ready/` by now): a name not later than every
    /// one handed over (a restart in the same second, a clock stepped back)
    /// keeps its start time and gets a sequence number no name has had (see
    /// [`LAST_HANDED_OVER_FILE`]). Returns the path in `ready/`.
    pub fn hand_over(
        &self,
        active_file: &Path,
        name: crate::CaptureName,
    ) -> std::io::Result<PathBuf> {
        self.hand_over_with_counters(active_file, name, None)
    }

    /// [`Self::hand_over`], with the capture's drop counts: their record
    /// ([`crate::counters`]) is written under the capture's final name
    /// before the capture is renamed into `ready/`, so the uploader finds
    /// it whenever it finds the capture. A record that cannot be written
    /// is logged and the capture handed over without one.
    pub fn hand_over_with_counters(
        &self,
        active_file: &Path,
        name: crate::CaptureName,
        counters: Option<&crate::counters::CaptureCounters>,
    ) -> std::io::Result<PathBuf> {
        use nix::fcntl::{RenameFlags, renameat2};
        let ready = self.ready();
        let record = self.read_handed_over();
        let mut candidate = match record {
            Some(record) if name <= record.greatest => {
                name.with_sequence(next_sequence(record.highest_sequence)?)
            }
            _ => name,
        };
        loop {
            let target = ready.join(candidate.ready_file_name());
            // Only the launcher puts files in ready/: a name free now is
            // free at the rename, and its record may be (re)written.
            let mut recorded = None;
            if let Some(counters) = counters
                && std::fs::symlink_metadata(&target).is_err()
            {
                let file_name = candidate.ready_file_name();
                match crate::counters::write(&self.counters(), &file_name, counters) {
                    Ok(()) => recorded = Some(self.counters_record(&file_name)),
                    Err(e) => tracing::warn!(
                        folder = %self.counters().display(),
                        error = %e,
                        "cannot record the capture's drop counts; it is uploaded without them"
                    ),
                }
            }
            match renameat2(
                None,
                active_file,
                None,
                &target,
                RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => {
                    let updated = match record {
                        Some(record) => HandedOver {
                            greatest: record.greatest.max(candidate),
                            highest_sequence: record.highest_sequence.max(candidate.sequence()),
                        },
                        None => HandedOver {
                            greatest: candidate,
                            highest_sequence: candidate.sequence(),
                        },
                    };
                    self.remember_handed_over(updated)?;
                    return Ok(target);
                }
                Err(errno) => {
                    // Not this capture's name after all: its record goes.
                    if let Some(record) = recorded {
                        let _ = crate::counters::remove(&record);
                    }
                    if errno != nix::errno::Errno::EEXIST {
                        return Err(std::io::Error::from(errno));
                    }
                    candidate = candidate.with_sequence(next_sequence(candidate.sequence())?);
                }
            }
        }
    }

    /// The record, or `None` when there is none or it cannot be read. A
    /// record of one line (written before the second line existed) gives
    /// its name's sequence as the highest.
    fn read_handed_over(&self) -> Option<HandedOver> {
        use std::io::Read as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut text = String::new();
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(self.last_handed_over())
            .ok()?
            .take(256)
            .read_to_string(&mut text)
            .ok()?;
        let mut lines = text.lines();
        let greatest = crate::CaptureName::parse_ready(lines.next()?.trim()).ok()?;
        let highest_sequence = lines
            .next()
            .and_then(|line| line.trim().strip_prefix(HIGHEST_SEQUENCE))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
            .max(greatest.sequence());
        Some(HandedOver {
            greatest,
            highest_sequence,
        })
    }

    /// Written to a temporary file and renamed over the last one, so a
    /// crash leaves the old record or the new one, never half of one.
    fn remember_handed_over(&self, record: HandedOver) -> std::io::Result<()> {
        let path = self.last_handed_over();
        let temporary = self.root.join(format!(".{LAST_HANDED_OVER_FILE}.tmp"));
        std::fs::write(
            &temporary,
            format!(
                "{}\n{HIGHEST_SEQUENCE} {}\n",
                record.greatest, record.highest_sequence
            ),
        )?;
        std::fs::rename(&temporary, &path)
    }
}

/// The second line of [`LAST_HANDED_OVER_FILE`].
const HIGHEST_SEQUENCE: &str = "highest-sequence";

/// What [`LAST_HANDED_OVER_FILE`] holds.
#[derive(Debug, Clone, Copy)]
struct HandedOver {
    greatest: crate::CaptureName,
    highest_sequence: u32,
}

fn next_sequence(sequence: u32) -> std::io::Result<u32> {
    sequence.checked_add(1).ok_or_else(|| {
        std::io::Error::other(format!(
            "every capture sequence number up to {sequence} is used; remove {LAST_HANDED_OVER_FILE} from the spool only once ready/ is empty and the bucket keeps object versions"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CaptureName;

    #[test]
    fn a_capture_of_the_same_second_as_one_already_uploaded_gets_a_new_name() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
        let name = CaptureName::parse_active("20261127T142503Z.pcap").unwrap();
        let first = spool.active().join("20261127T142503Z.pcap");
        std::fs::write(&first, b"before tcpdump was restarted").unwrap();
        let landed = spool.hand_over(&first, name).unwrap();
        // The uploader shipped it and deleted it from ready/.
        std::fs::remove_file(&landed).unwrap();
        // tcpdump, restarted in the same second, names its file the same.
        let second = spool.active().join("20261127T142503Z.pcap");
        std::fs::write(&second, b"after the restart").unwrap();
        let again = spool.hand_over(&second, name).unwrap();
        assert_ne!(
            again, landed,
            "the second capture would replace the first's object"
        );
        assert_eq!(again.file_name().unwrap(), "20261127T142503Z-0001.pcap");
        // A later second starts from its own name again.
        let later = spool.active().join("20261127T142504Z.pcap");
        std::fs::write(&later, b"next").unwrap();
        let next = CaptureName::parse_active("20261127T142504Z.pcap").unwrap();
        let landed_later = spool.hand_over(&later, next).unwrap();
        assert_eq!(landed_later.file_name().unwrap(), "20261127T142504Z.pcap");
    }

    /// Hands over a file named `name` (as tcpdump wrote it), as the
    /// uploader would see it: the name it got in `ready/`, then deleted.
    fn hand_over_and_upload(spool: &SpoolLayout, name: &str) -> String {
        let file = spool.active().join(name);
        std::fs::write(&file, name).unwrap();
        let landed = spool
            .hand_over(&file, CaptureName::parse_active(name).unwrap())
            .unwrap();
        std::fs::remove_file(&landed).unwrap();
        landed.file_name().unwrap().to_string_lossy().into_owned()
    }

    #[test]
    fn after_the_clock_steps_back_no_capture_gets_a_name_already_used() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
        let mut used = Vec::new();
        // Two minutes of captures, the first split by -C into three files.
        for name in [
            "20261127T142503Z.pcap",
            "20261127T142503Z.pcap1",
            "20261127T142503Z.pcap2",
            "20261127T142603Z.pcap",
        ] {
            used.push(hand_over_and_upload(&spool, name));
        }
        assert_eq!(
            used,
            [
                "20261127T142503Z.pcap",
                "20261127T142503Z-0001.pcap",
                "20261127T142503Z-0002.pcap",
                "20261127T142603Z.pcap"
            ]
        );
        // The clock steps back two minutes: tcpdump names its files as
        // before, and the launcher is restarted in between (the record is
        // read from the spool each time).
        let mut after_step = Vec::new();
        for name in [
            "20261127T142503Z.pcap",
            "20261127T142503Z.pcap1",
            "20261127T142603Z.pcap",
            "20261127T142703Z.pcap",
        ] {
            after_step.push(hand_over_and_upload(&spool, name));
        }
        assert_eq!(
            after_step,
            [
                "20261127T142503Z-0003.pcap",
                "20261127T142503Z-0004.pcap",
                "20261127T142603Z-0005.pcap",
                // Later than every name handed over: its own name again.
                "20261127T142703Z.pcap"
            ]
        );
        // Every key template renders {file}, so distinct names are
        // distinct object keys.
        let mut names: Vec<&String> = used.iter().chain(&after_step).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "a name was used twice: {names:?}");
    }

    #[test]
    fn a_record_of_one_line_from_an_older_launcher_is_still_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
        std::fs::write(spool.last_handed_over(), "20261127T142503Z-0002.pcap\n").unwrap();
        assert_eq!(
            hand_over_and_upload(&spool, "20261127T142503Z.pcap"),
            "20261127T142503Z-0003.pcap"
        );
    }

    #[test]
    fn hand_over_never_replaces_a_ready_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        spool.create_folders().unwrap();
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

#[cfg(test)]
mod folder_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_missing_folders_setgid_and_group_writable_and_keeps_existing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        std::fs::create_dir(spool.ready()).unwrap();
        std::fs::write(spool.ready().join("20261127T142503Z.pcap"), b"kept").unwrap();
        spool.create_folders().unwrap();
        spool.create_folders().unwrap();
        for folder in spool.folders() {
            let mode = std::fs::metadata(&folder).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, FOLDER_MODE, "{}", folder.display());
        }
        assert_eq!(
            std::fs::read(spool.ready().join("20261127T142503Z.pcap")).unwrap(),
            b"kept"
        );
    }

    #[test]
    fn a_file_where_a_folder_belongs_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolLayout::new(dir.path());
        std::fs::write(spool.active(), b"").unwrap();
        let error = spool.create_folders().unwrap_err();
        assert_eq!(error.path, spool.active());
        assert!(error.to_string().contains("not a folder"), "{error}");
    }
}
