//! The bucket contract: the one place that says what the objects in the
//! bucket are called, what they carry, and what S3's answers mean. The
//! uploader writes by it, the `captures` CLI reads by it, the `flows` crate
//! gives the index records' schema.
//!
//! - [`capture_keys`]: the key template, its placeholders, escaping, the
//!   default layout, the probe objects, and an hour's prefix for listing;
//! - [`index_keys`]: where each capture's flow index object goes;
//! - [`journal_keys`]: where each node's identity journal segments go;
//! - [`journal_record`]: the journal's schema (which pod or service held
//!   an address, and when);
//! - [`layout_record`]: the record the uploader writes under its prefix so
//!   that a reader finds the layout without being told;
//! - [`object_metadata`]: the typed metadata every capture carries;
//! - [`pins`]: the flight recorder's pins (which windows of which nodes
//!   an uploader in pinned mode ships);
//! - [`failure`]: S3 error codes and statuses sorted into kinds.
//!
//! ```text
//! <static prefix>/                      e.g. tcp-dumps/
//!   .s3-tcpdump-layout.json             the layout record
//!   <rendered key template>             the captures
//!   index/node=<n>/date=<d>/hour=<h>/   the flow index
//!   journal/node=<n>/date=<d>/hour=<h>/ the identity journal
//!   pins/<id>.json                      the flight recorder's pins
//! ```

pub mod capture_keys;
pub mod failure;
pub mod index_keys;
pub mod journal_keys;
pub mod journal_record;
pub mod layout_record;
pub mod object_metadata;
pub mod pins;

/// The Hive-partitioned folders the index and the journal share:
/// `<static prefix><dir>node=<node>/date=<YYYY-MM-DD>/hour=<HH>/`, so that
/// DuckDB and Athena read them in place and prune by node, date and hour.
mod hive {
    use chrono::{DateTime, Utc};

    /// One node's folder under `dir`; with an empty `node`, the prefix
    /// whose folders (`node=<name>/`) name every node.
    pub(crate) fn node_prefix(static_prefix: &str, dir: &str, node: &str) -> String {
        if node.is_empty() {
            return format!("{static_prefix}{dir}node=");
        }
        format!("{static_prefix}{dir}node={node}/")
    }

    /// One node's folder of one UTC hour under `dir`.
    pub(crate) fn hour_prefix(
        static_prefix: &str,
        dir: &str,
        node: &str,
        hour: DateTime<Utc>,
    ) -> String {
        format!(
            "{}date={}/hour={}/",
            node_prefix(static_prefix, dir, node),
            hour.format("%Y-%m-%d"),
            hour.format("%H"),
        )
    }
}

/// Lowercase hex, as `sha256sum` prints a digest and as the `sha256`
/// metadata holds it.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            // Writing to a String cannot fail.
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_what_sha256sum_prints() {
        assert_eq!(super::hex(&[0x00, 0xab, 0x0f]), "00ab0f");
    }
}
