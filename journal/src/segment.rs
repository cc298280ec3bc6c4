//! Writing a segment into the spool's `journal/` folder: gzip-compressed
//! JSON lines under a hidden temporary name, fsynced, then renamed to its
//! final name (`bucket::journal_keys::journal_file_name`), so the uploader
//! never sees half a segment. The folder is kept under its own budget: if
//! the uploader is away for long, the oldest segments go first, each
//! logged.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use bucket::journal_keys::{journal_file_name, parse_journal_file_name};
use bucket::journal_record::JournalLine;
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::errors::WriteError;
use crate::table::Segment;

/// Writes `segment` into `dir`; returns its path and size in bytes.
pub fn write(dir: &Path, segment: &Segment) -> Result<(PathBuf, u64), WriteError> {
    let name = journal_file_name(segment.header.from);
    let temporary = dir.join(format!(".{name}.tmp"));
    let error = |source| WriteError {
        path: temporary.clone(),
        source,
    };
    let file = File::create(&temporary).map_err(error)?;
    let mut gz = GzEncoder::new(io::BufWriter::new(file), Compression::default());
    let header = JournalLine::Segment(segment.header.clone());
    for line in std::iter::once(&header).chain(&segment.lines) {
        gz.write_all(&line.to_json()).map_err(error)?;
        gz.write_all(b"\n").map_err(error)?;
    }
    let file = gz
        .finish()
        .map_err(error)?
        .into_inner()
        .map_err(|e| error(e.into_error()))?;
    file.sync_all().map_err(error)?;
    let size = file.metadata().map_err(error)?.len();
    drop(file);
    let path = rename_without_replacing(&temporary, dir, segment)?;
    // The rename is durable once the folder is.
    if let Ok(folder) = File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok((path, size))
}

/// Renames the written segment to its name, never over a segment still
/// waiting (a restart in the same millisecond, a clock stepped back): the
/// next free millisecond names it then. The header keeps the true times.
fn rename_without_replacing(
    temporary: &Path,
    dir: &Path,
    segment: &Segment,
) -> Result<PathBuf, WriteError> {
    use nix::fcntl::{RenameFlags, renameat2};
    let mut start = segment.header.from;
    for _ in 0..1000 {
        let path = dir.join(journal_file_name(start));
        match renameat2(None, temporary, None, &path, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(path),
            Err(nix::errno::Errno::EEXIST) => start += chrono::TimeDelta::milliseconds(1),
            Err(errno) => {
                return Err(WriteError {
                    path,
                    source: io::Error::from(errno),
                });
            }
        }
    }
    Err(WriteError {
        path: temporary.to_owned(),
        source: io::Error::other("a thousand segments already start in the same second"),
    })
}

/// Removes temporary files a crash left in `dir` (hidden `.….tmp`).
pub fn remove_leftovers(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Deletes the oldest segments in `dir` until they take at most
/// `max_bytes`; returns the names deleted. Only segments (by name) are
/// counted and deleted.
pub fn keep_within(dir: &Path, max_bytes: u64) -> io::Result<Vec<String>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(start) = parse_journal_file_name(&name) else {
            continue;
        };
        let meta = fs::symlink_metadata(entry.path())?;
        if meta.is_file() {
            segments.push((start, name, meta.len()));
        }
    }
    segments.sort();
    let mut total: u64 = segments.iter().map(|(_, _, size)| size).sum();
    let mut dropped = Vec::new();
    for (_, name, size) in segments {
        if total <= max_bytes {
            break;
        }
        match fs::remove_file(dir.join(&name)) {
            Ok(()) => {}
            // Uploaded and deleted meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        total = total.saturating_sub(size);
        dropped.push(name);
    }
    Ok(dropped)
}

/// Reads a segment back (tests, benchmarks and readers of the spool).
pub fn read(path: &Path) -> io::Result<Vec<JournalLine>> {
    use std::io::BufRead as _;
    let gz = flate2::read::GzDecoder::new(File::open(path)?);
    io::BufReader::new(gz)
        .lines()
        .map(|line| {
            JournalLine::parse(line?.as_bytes())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::table::Table;
    use chrono::{DateTime, TimeDelta};

    #[test]
    fn a_written_segment_reads_back_header_first_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let start = DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        let mut table = Table::new("n1", start, 10);
        let segment = table.cut(start + TimeDelta::seconds(60));
        let (path, size) = write(dir.path(), &segment).unwrap();
        assert!(size > 0);
        let lines = read(&path).unwrap();
        assert!(matches!(&lines[0], JournalLine::Segment(h) if h.node == "n1" && h.stale));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_segment_never_replaces_one_waiting_under_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let start = DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        let mut first = Table::new("n1", start, 10);
        let mut second = Table::new("n1", start, 10);
        let (a, _) = write(dir.path(), &first.cut(start + TimeDelta::seconds(1))).unwrap();
        let (b, _) = write(dir.path(), &second.cut(start + TimeDelta::seconds(2))).unwrap();
        assert_ne!(a, b);
        assert!(a.exists() && b.exists());
        assert!(matches!(&read(&b).unwrap()[0], JournalLine::Segment(h) if h.from == start));
    }

    #[test]
    fn over_budget_the_oldest_segments_go_first_and_nothing_else_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let start = DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        for i in 0..3 {
            let name = journal_file_name(start + TimeDelta::seconds(i * 60));
            fs::write(dir.path().join(name), vec![0u8; 100]).unwrap();
        }
        fs::write(dir.path().join("notes.txt"), vec![0u8; 1000]).unwrap();
        let dropped = keep_within(dir.path(), 250).unwrap();
        assert_eq!(dropped, [journal_file_name(start)]);
        assert!(dir.path().join("notes.txt").exists());
    }
}
