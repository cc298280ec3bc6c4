use std::fmt;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

/// The `strftime` pattern the launcher gives tcpdump's `-w` (with `TZ=UTC`).
/// With `-C`, tcpdump appends a counter (`…Z.pcap1`, `…Z.pcap2`).
pub const TCPDUMP_FILE_PATTERN: &str = "%Y%m%dT%H%M%SZ.pcap";

const STAMP_FORMAT: &str = "%Y%m%dT%H%M%SZ";
const STAMP_LEN: usize = "20261127T142503Z".len();
const EXTENSION: &str = ".pcap";

/// The name of one capture file: when it started and, when tcpdump's `-C`
/// split the period, which piece of it this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CaptureName {
    start: DateTime<Utc>,
    sequence: u32,
}

/// A file name that is not a capture name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a capture file name (expected e.g. 20261127T142503Z.pcap)")]
pub struct NameError {
    name: String,
}

impl CaptureName {
    pub fn new(start: DateTime<Utc>, sequence: u32) -> Self {
        Self { start, sequence }
    }

    /// UTC time the capture started, to the second.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// 0 for the first file of a rotation period, then 1, 2, … per `-C` split.
    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    /// The same capture with another sequence number (used to avoid
    /// overwriting a file of the same name already in `ready/`).
    pub fn with_sequence(self, sequence: u32) -> Self {
        Self { sequence, ..self }
    }

    /// Parses a name in `ready/`: `20261127T142503Z.pcap` or
    /// `20261127T142503Z-0001.pcap`. Hidden and temporary names are refused.
    pub fn parse_ready(name: &str) -> Result<Self, NameError> {
        let refuse = || NameError {
            name: name.to_owned(),
        };
        let stem = name.strip_suffix(EXTENSION).ok_or_else(refuse)?;
        let (stamp, sequence) = match stem.split_once('-') {
            Some((stamp, digits)) => (stamp, parse_digits(digits).ok_or_else(refuse)?),
            None => (stem, 0),
        };
        let start = parse_stamp(stamp).ok_or_else(refuse)?;
        Ok(Self { start, sequence })
    }

    /// Parses a name tcpdump wrote in `active/` from [`TCPDUMP_FILE_PATTERN`]:
    /// `20261127T142503Z.pcap`, `20261127T142503Z.pcap1`, …
    pub fn parse_active(name: &str) -> Result<Self, NameError> {
        let refuse = || NameError {
            name: name.to_owned(),
        };
        let stamp = name.get(..STAMP_LEN).ok_or_else(refuse)?;
        let rest = &name[STAMP_LEN..];
        let digits = rest.strip_prefix(EXTENSION).ok_or_else(refuse)?;
        let sequence = if digits.is_empty() {
            0
        } else {
            parse_digits(digits).ok_or_else(refuse)?
        };
        let start = parse_stamp(stamp).ok_or_else(refuse)?;
        Ok(Self { start, sequence })
    }

    /// The file name this capture has in `ready/`.
    pub fn ready_file_name(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for CaptureName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.start.format(STAMP_FORMAT))?;
        if self.sequence > 0 {
            write!(f, "-{:04}", self.sequence)?;
        }
        f.write_str(EXTENSION)
    }
}

fn parse_digits(digits: &str) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn parse_stamp(stamp: &str) -> Option<DateTime<Utc>> {
    if stamp.len() != STAMP_LEN {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(stamp, STAMP_FORMAT).ok()?;
    Some(Utc.from_utc_datetime(&naive))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn ready_name_round_trips_with_and_without_sequence() {
        let first = CaptureName::new(at("2026-11-27T14:25:03Z"), 0);
        assert_eq!(first.ready_file_name(), "20261127T142503Z.pcap");
        assert_eq!(CaptureName::parse_ready("20261127T142503Z.pcap"), Ok(first));
        let third = first.with_sequence(2);
        assert_eq!(third.ready_file_name(), "20261127T142503Z-0002.pcap");
        assert_eq!(
            CaptureName::parse_ready("20261127T142503Z-0002.pcap"),
            Ok(third)
        );
    }

    #[test]
    fn active_names_carry_tcpdump_counter_suffix() {
        let base = CaptureName::new(at("2026-11-27T14:25:03Z"), 0);
        assert_eq!(CaptureName::parse_active("20261127T142503Z.pcap"), Ok(base));
        assert_eq!(
            CaptureName::parse_active("20261127T142503Z.pcap12"),
            Ok(base.with_sequence(12))
        );
    }

    #[test]
    fn refuses_hidden_temporary_and_foreign_names() {
        for bad in [
            ".20261127T142503Z.pcap",
            "20261127T142503Z.pcap.tmp",
            "20261127T142503Z.pcap~",
            "20261127T142503Z-.pcap",
            "20261127T142503Z-+1.pcap",
            "20261327T142503Z.pcap",
            "notes.txt",
            "../20261127T142503Z.pcap",
            "",
        ] {
            assert!(CaptureName::parse_ready(bad).is_err(), "accepted {bad:?}");
        }
        assert!(CaptureName::parse_active("20261127T142503Z.pcapx").is_err());
        assert!(CaptureName::parse_active("20261127T142503Z").is_err());
    }

    #[test]
    fn orders_oldest_first_then_by_sequence() {
        let mut names: Vec<CaptureName> = [
            "20261127T142504Z.pcap",
            "20261127T142503Z-0010.pcap",
            "20261127T142503Z-0002.pcap",
            "20261127T142503Z.pcap",
        ]
        .iter()
        .map(|n| CaptureName::parse_ready(n).unwrap())
        .collect();
        names.sort();
        let sorted: Vec<String> = names.iter().map(CaptureName::ready_file_name).collect();
        assert_eq!(
            sorted,
            [
                "20261127T142503Z.pcap",
                "20261127T142503Z-0002.pcap",
                "20261127T142503Z-0010.pcap",
                "20261127T142504Z.pcap"
            ]
        );
    }
}
