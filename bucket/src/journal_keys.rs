//! Journal keys: where each node's identity journal objects go (the
//! records themselves are [`crate::journal_record`]'s schema).
//!
//! ```text
//! <static prefix of the key template>journal/node=<node>/date=<YYYY-MM-DD>/hour=<HH>/<segment start>.jsonl.gz
//! ```
//!
//! Date and hour are those of the segment's UTC start. The folder is beside
//! `index/` and no capture or index key can produce it (capture keys end in
//! a capture file name, index keys live under
//! [`crate::index_keys::INDEX_DIR`]); the `name=value` folders are Hive
//! partitions, so DuckDB and Athena prune by node, date and hour.
//!
//! In the spool (`journal/`) and in the bucket a segment is named by its
//! start to the millisecond, `20261127T142500.000Z.jsonl.gz`: a segment cut
//! early (the record cap, a restart) starts at another millisecond, so no
//! two segments of one node share a key.

use chrono::{DateTime, NaiveDateTime, Utc};

/// The folder under the key template's static prefix that holds journals.
pub const JOURNAL_DIR: &str = "journal/";

/// The suffix of every journal segment, in the spool and in the bucket.
pub const JOURNAL_SUFFIX: &str = ".jsonl.gz";

/// Content type of a journal object (gzip-compressed JSON lines).
pub const JOURNAL_CONTENT_TYPE: &str = "application/x-ndjson";

/// How a segment's start is written in its file name.
const START_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

/// The file name of the segment that starts at `start`.
pub fn journal_file_name(start: DateTime<Utc>) -> String {
    format!("{}{JOURNAL_SUFFIX}", start.format(START_FORMAT))
}

/// The start of the segment a file name names; `None` for any other name
/// (hidden, temporary or foreign files are never uploaded as journals).
pub fn parse_journal_file_name(name: &str) -> Option<DateTime<Utc>> {
    let stem = name.strip_suffix(JOURNAL_SUFFIX)?;
    // Exactly the shape written above: 8 digits, T, 6 digits, ., 3 digits, Z.
    if stem.len() != 20 || !stem.is_ascii() {
        return None;
    }
    NaiveDateTime::parse_from_str(stem, START_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

/// The key of a journal segment. `static_prefix` is the key template's
/// ([`crate::capture_keys::KeyTemplate::static_prefix`]); `file` the
/// segment's file name.
pub fn journal_key(static_prefix: &str, node: &str, start: DateTime<Utc>, file: &str) -> String {
    format!("{}{file}", journal_hour_prefix(static_prefix, node, start))
}

/// The prefix that holds one node's journal segments that start in one hour.
pub fn journal_hour_prefix(static_prefix: &str, node: &str, hour: DateTime<Utc>) -> String {
    crate::hive::hour_prefix(static_prefix, JOURNAL_DIR, node, hour)
}

/// The prefix that holds one node's journal segments; with an empty `node`,
/// the prefix whose folders (`node=<name>/`) name every node with a journal.
pub fn journal_node_prefix(static_prefix: &str, node: &str) -> String {
    crate::hive::node_prefix(static_prefix, JOURNAL_DIR, node)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn journal_key_is_hive_partitioned_beside_the_index() {
        let start = at("2026-11-27T14:25:00.250Z");
        let file = journal_file_name(start);
        assert_eq!(file, "20261127T142500.250Z.jsonl.gz");
        assert_eq!(
            journal_key("tcp-dumps/", "ip-10-0-1-7", start, &file),
            "tcp-dumps/journal/node=ip-10-0-1-7/date=2026-11-27/hour=14/20261127T142500.250Z.jsonl.gz"
        );
        assert!(
            journal_key("tcp-dumps/", "n", start, &file)
                .starts_with(&journal_node_prefix("tcp-dumps/", ""))
        );
        let index = crate::index_keys::index_key("tcp-dumps/", "n", start, "f");
        assert!(!index.starts_with(&journal_node_prefix("tcp-dumps/", "")));
    }

    #[test]
    fn a_file_name_reads_back_as_its_start_and_nothing_else_is_a_journal() {
        let start = at("2026-11-27T14:25:00.007Z");
        assert_eq!(
            parse_journal_file_name(&journal_file_name(start)),
            Some(start)
        );
        for foreign in [
            ".20261127T142500.007Z.jsonl.gz.tmp",
            "20261127T142500.007Z.jsonl.gz.tmp",
            "20261127T142500Z.pcap",
            "20261127T142500Z.jsonl.gz",
            "notes.txt",
            "20261399T142500.007Z.jsonl.gz",
        ] {
            assert_eq!(parse_journal_file_name(foreign), None, "{foreign}");
        }
    }
}
