//! The user metadata every uploaded capture carries: the one place that names
//! it. S3 returns these as `x-amz-meta-<name>` headers; tools that read
//! captures back import these constants.

use std::collections::HashMap;

use crate::pcap::PcapSummary;
use chrono::{DateTime, SecondsFormat, Utc};

/// Lowercase hex SHA-256 of the whole file, so that `sha256sum` of a
/// download can be compared with it directly.
pub const SHA256: &str = "sha256";
/// The capture's UTC start time, RFC 3339 (`2026-11-27T14:25:03Z`).
pub const CAPTURE_START: &str = "capture-start";
/// The node the capture was taken on (`{node}` of the key template).
pub const NODE: &str = "node";
/// Name and version of the program that uploaded it.
pub const UPLOADER: &str = "uploader";
/// Whole records in the capture (before any damage).
pub const PACKETS: &str = "packets";
/// UTC time of the first and last whole record, RFC 3339 with
/// microseconds (`2026-11-27T14:25:03.123456Z`); absent without packets.
pub const FIRST_PACKET: &str = "first-packet";
pub const LAST_PACKET: &str = "last-packet";
/// `ok`, or `damaged: <what and at which byte>`: the capture is uploaded
/// either way (it is evidence), but a damaged one says so.
pub const PCAP: &str = "pcap";
/// [`PCAP`]'s value for a whole capture.
pub const PCAP_OK: &str = "ok";
/// Present only when the flow index was asked for but not written:
/// `skipped: <why>` (it passed its size limit, or could not be written).
/// The capture itself is whole; only `captures find` cannot name its flows.
pub const INDEX: &str = "index";

/// The metadata of one capture.
pub fn for_capture(
    sha256_hex: &str,
    start: DateTime<Utc>,
    node: &str,
    pcap: &PcapSummary,
) -> HashMap<String, String> {
    let mut metadata = HashMap::from([
        (PACKETS.to_owned(), pcap.packets.to_string()),
        (
            PCAP.to_owned(),
            match pcap.damage {
                None => PCAP_OK.to_owned(),
                Some(damage) => format!("damaged: {damage}"),
            },
        ),
        (SHA256.to_owned(), sha256_hex.to_owned()),
        (
            CAPTURE_START.to_owned(),
            start.to_rfc3339_opts(SecondsFormat::Secs, true),
        ),
        (NODE.to_owned(), node.to_owned()),
        (
            UPLOADER.to_owned(),
            concat!("s3-tcpdump-uploader/", env!("CARGO_PKG_VERSION")).to_owned(),
        ),
    ]);
    for (name, at) in [
        (FIRST_PACKET, pcap.first_packet),
        (LAST_PACKET, pcap.last_packet),
    ] {
        if let Some(time) = at.and_then(packet_time) {
            metadata.insert(name.to_owned(), time);
        }
    }
    metadata
}

/// A record's timestamp as RFC 3339 UTC with microseconds.
fn packet_time(since_epoch: std::time::Duration) -> Option<String> {
    let secs = i64::try_from(since_epoch.as_secs()).ok()?;
    DateTime::<Utc>::from_timestamp(secs, since_epoch.subsec_nanos())
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_times_are_utc_with_microseconds_and_damage_is_named() {
        let pcap = PcapSummary {
            packets: 2,
            first_packet: Some(std::time::Duration::new(1_764_300_000, 123_456_000)),
            last_packet: Some(std::time::Duration::new(1_764_300_001, 5_000)),
            whole_bytes: 100,
            link_type: Some(1),
            damage: Some(crate::pcap::Damage {
                offset: 100,
                kind: crate::pcap::DamageKind::Truncated,
            }),
        };
        let meta = for_capture("ab", Utc::now(), "n", &pcap);
        assert_eq!(meta[PACKETS], "2");
        assert_eq!(meta[FIRST_PACKET], "2025-11-28T03:20:00.123456Z");
        assert_eq!(meta[LAST_PACKET], "2025-11-28T03:20:01.000005Z");
        assert_eq!(meta[PCAP], "damaged: ends inside the record at byte 100");
        let whole = for_capture("ab", Utc::now(), "n", &PcapSummary::default());
        assert_eq!(whole[PCAP], PCAP_OK);
        assert!(!whole.contains_key(FIRST_PACKET));
    }
}
