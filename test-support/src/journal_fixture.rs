//! Identity journal segments for tests and benchmarks, written with the
//! bucket's schema types (`bucket::journal_record`) and named by its keys
//! (`bucket::journal_keys`): never hand-written JSON.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use bucket::journal_keys::journal_file_name;
use bucket::journal_record::{JOURNAL_SCHEMA, JournalLine, PodInterval, SegmentHeader};
use chrono::{DateTime, Utc};

/// A segment's bytes: gzip JSON lines, the header first.
pub fn segment_gz(header: &SegmentHeader, lines: &[JournalLine]) -> std::io::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let header = JournalLine::Segment(header.clone());
    for line in std::iter::once(&header).chain(lines) {
        gz.write_all(&line.to_json())?;
        gz.write_all(b"\n")?;
    }
    gz.finish()
}

/// A fresh (not stale) segment header of `node` for `[from, to)`.
pub fn header(node: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> SegmentHeader {
    SegmentHeader {
        schema: JOURNAL_SCHEMA,
        node: node.to_owned(),
        from,
        to,
        stale: false,
        stale_since: None,
        stale_reason: None,
        written_by: "test-support".to_owned(),
    }
}

/// A pod holding `ip` on `node` since `from`, still holding it; its `app`
/// label is its name up to the last `-`.
pub fn pod(
    namespace: &str,
    name: &str,
    ip: Ipv4Addr,
    node: &str,
    from: DateTime<Utc>,
) -> JournalLine {
    let app = name.rsplit_once('-').map_or(name, |(app, _)| app);
    JournalLine::Pod(PodInterval {
        ip: ip.to_string(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: format!("uid-{namespace}-{name}"),
        owner: None,
        workload: None,
        labels: BTreeMap::from([("app".to_owned(), app.to_owned())]),
        host_network: false,
        node: node.to_owned(),
        valid_from: from,
        valid_to: None,
    })
}

/// Writes `count` segments of `period` seconds from `start` into `dir` (a
/// spool's `journal/` folder), each restating the same open `pods`, named
/// as the journal names them. Returns their paths.
pub fn write_segments(
    dir: &Path,
    node: &str,
    pods: &[JournalLine],
    start: DateTime<Utc>,
    count: u32,
    period: chrono::TimeDelta,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    (0..count)
        .map(|i| {
            let from = start + period * i32::try_from(i).unwrap_or(i32::MAX);
            let bytes = segment_gz(&header(node, from, from + period), pods)?;
            let path = dir.join(journal_file_name(from));
            std::fs::write(&path, bytes)?;
            Ok(path)
        })
        .collect()
}
