//! The user metadata every uploaded capture carries: the one place that names
//! it and converts it. S3 returns these as `x-amz-meta-<name>` headers;
//! [`ObjectMetadata`] is written and read back through this module only.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use spool::pcap::PcapSummary;

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
const INDEX_SKIPPED_PREFIX: &str = "skipped: ";
/// Packets the kernel dropped (tcpdump's buffer was full) while the
/// capture was written, counted by the launcher from tcpdump's counters;
/// absent on captures handed over without a count (after a crash, or by
/// an older launcher). How precise: see [`KERNEL_DROPS_FROM`].
pub const KERNEL_DROPS: &str = "kernel-drops";
/// Packets the interface dropped in the same interval (0 on `any`).
pub const INTERFACE_DROPS: &str = "interface-drops";
/// The interval the drops were counted over, RFC 3339 with milliseconds:
/// two reads of tcpdump's counters (its answers to SIGUSR1), the last one
/// before the previous capture was handed over and the last one before
/// this one was. It is the capture's own interval shifted earlier by up
/// to the launcher's --stats-interval-ms, so a drop near the end of a
/// capture may be counted in the next one; consecutive captures count
/// consecutive intervals, each drop once.
pub const KERNEL_DROPS_FROM: &str = "drops-counted-from";
pub const KERNEL_DROPS_TO: &str = "drops-counted-to";

/// A metadata value that is missing or cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("no {name} metadata")]
    Missing { name: &'static str },
    #[error("{name} metadata {value:?} is not {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// What the pcap check found: [`PCAP`]'s value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PcapVerdict {
    Whole,
    /// What is damaged and at which byte.
    Damaged(String),
}

impl std::fmt::Display for PcapVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PcapVerdict::Whole => f.write_str(PCAP_OK),
            PcapVerdict::Damaged(what) => write!(f, "{DAMAGED_PREFIX}{what}"),
        }
    }
}

const DAMAGED_PREFIX: &str = "damaged: ";

/// The metadata of one capture, typed; [`Self::to_headers`] and
/// [`Self::from_headers`] are the one place it meets S3's name/value map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMetadata {
    /// Lowercase hex SHA-256 of the whole file.
    pub sha256: String,
    /// Whole seconds: a capture's start comes from its name.
    pub capture_start: DateTime<Utc>,
    pub node: String,
    pub uploader: String,
    pub packets: u64,
    pub first_packet: Option<DateTime<Utc>>,
    pub last_packet: Option<DateTime<Utc>>,
    pub pcap: PcapVerdict,
    /// Why the capture has no flow index, when one was asked for but not
    /// written ([`INDEX`]).
    pub index_skipped: Option<String>,
    /// The drops counted while it was written ([`KERNEL_DROPS`]), when
    /// the launcher counted them.
    pub drops: Option<Drops>,
}

/// Packets dropped during one capture, and the interval of the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    pub kernel: u64,
    pub interface: u64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Drops {
    /// From the spool's record of the capture; `None` if its times are
    /// out of range.
    pub fn from_counters(counted: &spool::counters::CaptureCounters) -> Option<Self> {
        let time = |ms: u64| DateTime::<Utc>::from_timestamp_millis(i64::try_from(ms).ok()?);
        Some(Self {
            kernel: counted.dropped_by_kernel,
            interface: counted.dropped_by_interface,
            from: time(counted.from)?,
            to: time(counted.to)?,
        })
    }
}

impl ObjectMetadata {
    /// The metadata this build's uploader writes for a capture.
    pub fn for_capture(
        sha256_hex: &str,
        start: DateTime<Utc>,
        node: &str,
        pcap: &PcapSummary,
    ) -> Self {
        Self {
            sha256: sha256_hex.to_owned(),
            capture_start: start,
            node: node.to_owned(),
            uploader: concat!("s3-tcpdump-uploader/", env!("CARGO_PKG_VERSION")).to_owned(),
            packets: pcap.packets,
            first_packet: pcap.first_packet.and_then(packet_time),
            last_packet: pcap.last_packet.and_then(packet_time),
            pcap: match pcap.damage {
                None => PcapVerdict::Whole,
                Some(damage) => PcapVerdict::Damaged(damage.to_string()),
            },
            index_skipped: None,
            drops: None,
        }
    }

    /// The user metadata of the object (S3 adds `x-amz-meta-`).
    pub fn to_headers(&self) -> HashMap<String, String> {
        let mut headers = HashMap::from([
            (PACKETS.to_owned(), self.packets.to_string()),
            (PCAP.to_owned(), self.pcap.to_string()),
            (SHA256.to_owned(), self.sha256.clone()),
            (
                CAPTURE_START.to_owned(),
                self.capture_start
                    .to_rfc3339_opts(SecondsFormat::Secs, true),
            ),
            (NODE.to_owned(), self.node.clone()),
            (UPLOADER.to_owned(), self.uploader.clone()),
        ]);
        for (name, at) in [
            (FIRST_PACKET, self.first_packet),
            (LAST_PACKET, self.last_packet),
        ] {
            if let Some(time) = at {
                headers.insert(
                    name.to_owned(),
                    time.to_rfc3339_opts(SecondsFormat::Micros, true),
                );
            }
        }
        if let Some(why) = &self.index_skipped {
            headers.insert(INDEX.to_owned(), format!("{INDEX_SKIPPED_PREFIX}{why}"));
        }
        if let Some(drops) = &self.drops {
            let millis = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
            headers.extend([
                (KERNEL_DROPS.to_owned(), drops.kernel.to_string()),
                (INTERFACE_DROPS.to_owned(), drops.interface.to_string()),
                (KERNEL_DROPS_FROM.to_owned(), millis(drops.from)),
                (KERNEL_DROPS_TO.to_owned(), millis(drops.to)),
            ]);
        }
        headers
    }

    /// Reads the metadata back; a field every capture carries that is
    /// missing or unreadable is named in the error.
    pub fn from_headers(headers: &HashMap<String, String>) -> Result<Self, MetadataError> {
        let required =
            |name: &'static str| headers.get(name).ok_or(MetadataError::Missing { name });
        let time = |name: &'static str, value: &String| {
            DateTime::parse_from_rfc3339(value)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| MetadataError::Invalid {
                    name,
                    value: value.clone(),
                    expected: "an RFC 3339 time",
                })
        };
        let optional_time =
            |name: &'static str| headers.get(name).map(|v| time(name, v)).transpose();
        let pcap = required(PCAP)?;
        let pcap = match pcap.strip_prefix(DAMAGED_PREFIX) {
            _ if pcap == PCAP_OK => PcapVerdict::Whole,
            Some(what) => PcapVerdict::Damaged(what.to_owned()),
            None => {
                return Err(MetadataError::Invalid {
                    name: PCAP,
                    value: pcap.clone(),
                    expected: "`ok` or `damaged: …`",
                });
            }
        };
        let index_skipped = match headers.get(INDEX) {
            None => None,
            Some(value) => match value.strip_prefix(INDEX_SKIPPED_PREFIX) {
                Some(why) => Some(why.to_owned()),
                None => {
                    return Err(MetadataError::Invalid {
                        name: INDEX,
                        value: value.clone(),
                        expected: "`skipped: …`",
                    });
                }
            },
        };
        let count = |name: &'static str, value: &String| {
            value.parse::<u64>().map_err(|_| MetadataError::Invalid {
                name,
                value: value.clone(),
                expected: "a count",
            })
        };
        // Objects uploaded before the drops were counted have none of
        // these; one that has some has all.
        let drops = match headers.get(KERNEL_DROPS) {
            None => None,
            Some(kernel) => Some(Drops {
                kernel: count(KERNEL_DROPS, kernel)?,
                interface: count(INTERFACE_DROPS, required(INTERFACE_DROPS)?)?,
                from: time(KERNEL_DROPS_FROM, required(KERNEL_DROPS_FROM)?)?,
                to: time(KERNEL_DROPS_TO, required(KERNEL_DROPS_TO)?)?,
            }),
        };
        let packets = required(PACKETS)?;
        Ok(Self {
            sha256: required(SHA256)?.clone(),
            capture_start: time(CAPTURE_START, required(CAPTURE_START)?)?,
            node: required(NODE)?.clone(),
            uploader: required(UPLOADER)?.clone(),
            packets: packets.parse().map_err(|_| MetadataError::Invalid {
                name: PACKETS,
                value: packets.clone(),
                expected: "a count",
            })?,
            first_packet: optional_time(FIRST_PACKET)?,
            last_packet: optional_time(LAST_PACKET)?,
            pcap,
            index_skipped,
            drops,
        })
    }
}

/// A record's timestamp, microseconds kept.
fn packet_time(since_epoch: std::time::Duration) -> Option<DateTime<Utc>> {
    let secs = i64::try_from(since_epoch.as_secs()).ok()?;
    DateTime::<Utc>::from_timestamp(secs, since_epoch.subsec_micros() * 1000)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn damaged_summary() -> PcapSummary {
        PcapSummary {
            packets: 2,
            first_packet: Some(std::time::Duration::new(1_764_300_000, 123_456_789)),
            last_packet: Some(std::time::Duration::new(1_764_300_001, 5_000)),
            whole_bytes: 100,
            link_type: Some(1),
            damage: Some(spool::pcap::Damage {
                offset: 100,
                kind: spool::pcap::DamageKind::Truncated,
            }),
        }
    }

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T14:25:03Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn packet_times_are_utc_with_microseconds_and_damage_is_named() {
        let meta = ObjectMetadata::for_capture("ab", start(), "n", &damaged_summary()).to_headers();
        assert_eq!(meta[PACKETS], "2");
        assert_eq!(meta[CAPTURE_START], "2026-11-27T14:25:03Z");
        assert_eq!(meta[FIRST_PACKET], "2025-11-28T03:20:00.123456Z");
        assert_eq!(meta[LAST_PACKET], "2025-11-28T03:20:01.000005Z");
        assert_eq!(meta[PCAP], "damaged: ends inside the record at byte 100");
        let whole =
            ObjectMetadata::for_capture("ab", start(), "n", &PcapSummary::default()).to_headers();
        assert_eq!(whole[PCAP], PCAP_OK);
        assert!(!whole.contains_key(FIRST_PACKET));
    }

    #[test]
    fn metadata_reads_back_from_its_headers_as_written() {
        for summary in [damaged_summary(), PcapSummary::default()] {
            let written = ObjectMetadata::for_capture("ab12", start(), "node-a", &summary);
            let read = ObjectMetadata::from_headers(&written.to_headers()).unwrap();
            assert_eq!(read, written);
        }
    }

    #[test]
    fn a_skipped_index_is_written_as_index_skipped_and_read_back() {
        let mut written = ObjectMetadata::for_capture("ab", start(), "n", &PcapSummary::default());
        assert!(!written.to_headers().contains_key(INDEX));
        written.index_skipped = Some("larger than 33554432 bytes".to_owned());
        let headers = written.to_headers();
        assert_eq!(headers[INDEX], "skipped: larger than 33554432 bytes");
        assert_eq!(ObjectMetadata::from_headers(&headers).unwrap(), written);
        let mut odd = headers;
        odd.insert(INDEX.to_owned(), "maybe".to_owned());
        let err = ObjectMetadata::from_headers(&odd).unwrap_err().to_string();
        assert!(err.contains("index") && err.contains("maybe"), "{err}");
    }

    #[test]
    fn drop_counts_are_written_with_their_interval_and_read_back_and_old_objects_have_none() {
        let mut written = ObjectMetadata::for_capture("ab", start(), "n", &PcapSummary::default());
        let old = written.to_headers();
        assert!(!old.contains_key(KERNEL_DROPS));
        assert_eq!(ObjectMetadata::from_headers(&old).unwrap().drops, None);
        written.drops = Drops::from_counters(&spool::counters::CaptureCounters {
            dropped_by_kernel: 7,
            dropped_by_interface: 0,
            from: 1_796_353_559_123,
            to: 1_796_353_619_456,
        });
        let headers = written.to_headers();
        assert_eq!(headers[KERNEL_DROPS], "7");
        assert_eq!(headers[INTERFACE_DROPS], "0");
        assert_eq!(headers[KERNEL_DROPS_FROM], "2026-12-04T03:05:59.123Z");
        assert_eq!(headers[KERNEL_DROPS_TO], "2026-12-04T03:06:59.456Z");
        assert_eq!(ObjectMetadata::from_headers(&headers).unwrap(), written);
        let mut partial = headers;
        partial.remove(KERNEL_DROPS_TO);
        let err = ObjectMetadata::from_headers(&partial)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "no drops-counted-to metadata");
    }

    #[test]
    fn missing_or_unreadable_metadata_is_named() {
        let mut headers =
            ObjectMetadata::for_capture("ab", start(), "n", &PcapSummary::default()).to_headers();
        headers.remove(SHA256);
        assert_eq!(
            ObjectMetadata::from_headers(&headers)
                .unwrap_err()
                .to_string(),
            "no sha256 metadata"
        );
        headers.insert(SHA256.to_owned(), "ab".to_owned());
        headers.insert(PACKETS.to_owned(), "many".to_owned());
        let err = ObjectMetadata::from_headers(&headers)
            .unwrap_err()
            .to_string();
        assert!(err.contains("packets") && err.contains("many"), "{err}");
    }
}
