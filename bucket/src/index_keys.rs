//! Index keys: where each capture's flow index object goes (the records
//! themselves are the `flows` crate's schema).
//!
//! ```text
//! <static prefix of the key template>index/node=<node>/date=<YYYY-MM-DD>/hour=<HH>/<capture file>.jsonl.gz
//! ```
//!
//! (date and hour of the capture's UTC start). The `name=value` folders are
//! Hive partitions, so DuckDB and Athena read the index in place and prune
//! by node, date and hour.

use chrono::{DateTime, Utc};

/// The folder under the key template's static prefix that holds the index.
pub const INDEX_DIR: &str = "index/";

/// The suffix of every index object.
pub const INDEX_SUFFIX: &str = ".jsonl.gz";

/// Content type of an index object (gzip-compressed JSON lines).
pub const INDEX_CONTENT_TYPE: &str = "application/x-ndjson";

/// The key of a capture's index object. `static_prefix` is the key
/// template's ([`crate::capture_keys::KeyTemplate::static_prefix`]); `file`
/// the capture's file name.
pub fn index_key(static_prefix: &str, node: &str, start: DateTime<Utc>, file: &str) -> String {
    format!(
        "{}{file}{INDEX_SUFFIX}",
        index_hour_prefix(static_prefix, node, start)
    )
}

/// The prefix that holds one node's index objects of one hour.
pub fn index_hour_prefix(static_prefix: &str, node: &str, hour: DateTime<Utc>) -> String {
    crate::hive::hour_prefix(static_prefix, INDEX_DIR, node, hour)
}

/// The prefix that holds one node's index objects; with an empty `node`,
/// the prefix whose folders (`node=<name>/`) name every node with an index.
pub fn index_node_prefix(static_prefix: &str, node: &str) -> String {
    crate::hive::node_prefix(static_prefix, INDEX_DIR, node)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn index_key_is_hive_partitioned_by_node_date_and_hour() {
        let start = DateTime::parse_from_rfc3339("2026-11-27T14:25:03Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            index_key("tcp-dumps/", "ip-10-0-1-7", start, "20261127T142503Z.pcap"),
            "tcp-dumps/index/node=ip-10-0-1-7/date=2026-11-27/hour=14/20261127T142503Z.pcap.jsonl.gz"
        );
        assert!(
            index_key("tcp-dumps/", "n", start, "f").starts_with(&index_hour_prefix(
                "tcp-dumps/",
                "n",
                start
            ))
        );
        assert!(
            index_key("tcp-dumps/", "n", start, "f")
                .starts_with(&index_node_prefix("tcp-dumps/", ""))
        );
    }
}
