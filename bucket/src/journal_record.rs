//! The identity journal's schema: which pod or service held an IP address,
//! and from when to when. One segment is gzip-compressed JSON lines: a
//! header, then one line per (address, holder) interval that overlaps the
//! segment's time, pods of the node that wrote it and the cluster's
//! Services. Every segment stands alone: an interval still open at the
//! segment's end is written again, with the same `valid_from`, in the next.
//!
//! ```text
//! {"record":"segment","schema":1,"node":"ip-10-0-1-7","from":"2026-11-27T14:25:00Z","to":"2026-11-27T14:26:00Z","stale":false,...}
//! {"record":"pod","ip":"10.0.3.7","namespace":"payments","name":"api-5f7c-xk2p9","uid":"…","owner":{"kind":"ReplicaSet","name":"api-5f7c"},"workload":{"kind":"Deployment","name":"api"},"labels":{"app":"api"},"host_network":false,"node":"ip-10-0-1-7","valid_from":"2026-11-27T14:02:11.5Z","valid_to":"2026-11-27T14:25:31Z"}
//! {"record":"service","ip":"172.20.0.10","namespace":"kube-system","name":"kube-dns","uid":"…","valid_from":"…","valid_to":null}
//! ```
//!
//! Only these fields are ever kept: a pod read from the API server carries
//! its whole spec (environment variables included), none of which is
//! stored. A reader refuses a newer `schema` rather than guess at it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The version of the records written by this build.
pub const JOURNAL_SCHEMA: u32 = 1;

/// One line of a journal segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum JournalLine {
    /// The first line: what the segment covers and how far to trust it.
    Segment(SegmentHeader),
    /// A pod's IP address (IPv4 or IPv6) over an interval.
    Pod(PodInterval),
    /// A Service's cluster IP over an interval.
    Service(ServiceInterval),
}

/// What a segment covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeader {
    pub schema: u32,
    /// The node whose pods the segment lists (`spec.nodeName`).
    pub node: String,
    /// The segment's time: every interval below overlaps `[from, to)`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// True when, at some time in `[from, to)`, the journal did not know the
    /// API server's current state (unreachable, or not yet listed): pods
    /// that came or went meanwhile may be missing, and intervals that end
    /// at a relist end at the relist, not at the real deletion.
    pub stale: bool,
    /// When the journal last lost the API server, if it has not listed
    /// everything again since before `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_since: Option<DateTime<Utc>>,
    /// Why the journal is stale, as the last error said (no secrets: the
    /// client's error text, which names the URL and the status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_reason: Option<String>,
    /// The program that wrote the segment, `journal <version>`.
    pub written_by: String,
}

/// A workload reference: `ReplicaSet/api-5f7c`, `Deployment/api`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// A pod's address over an interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInterval {
    pub ip: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The controller that owns the pod (`metadata.ownerReferences` with
    /// `controller: true`), e.g. a ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// The owner's owner, when it follows from the name: a ReplicaSet
    /// `api-5f7c` whose pod carries `pod-template-hash=5f7c` belongs to the
    /// Deployment `api`. Derived by Kubernetes' naming convention, not read
    /// from the ReplicaSet (the journal may read pods and services only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Owner>,
    /// The pod's labels that the allow-list names (`JOURNAL_LABELS`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The pod shares the node's network namespace, so this address is the
    /// node's and other pods may hold it at the same time.
    pub host_network: bool,
    pub node: String,
    /// When the journal first saw the pod with this address.
    pub valid_from: DateTime<Utc>,
    /// When the pod was deleted or lost this address; `None` while it
    /// still holds it at the segment's end.
    pub valid_to: Option<DateTime<Utc>>,
}

/// A Service's cluster IP over an interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInterval {
    pub ip: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub valid_from: DateTime<Utc>,
    pub valid_to: Option<DateTime<Utc>>,
}

/// A segment line that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalRecordError {
    #[error("journal line is not valid JSON of the expected fields: {0}")]
    Unreadable(#[from] serde_json::Error),
    #[error(
        "journal segment has schema {found}, newer than this build reads ({JOURNAL_SCHEMA}); use a newer captures"
    )]
    NewerSchema { found: u32 },
}

impl JournalLine {
    /// One line as JSON, without its newline.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings, numbers, maps of strings and times always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads one line, refusing a header of a newer schema.
    pub fn parse(line: &[u8]) -> Result<Self, JournalRecordError> {
        let parsed: Self = serde_json::from_slice(line)?;
        if let Self::Segment(header) = &parsed
            && header.schema > JOURNAL_SCHEMA
        {
            return Err(JournalRecordError::NewerSchema {
                found: header.schema,
            });
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn every_line_kind_reads_back_as_written() {
        let lines = [
            JournalLine::Segment(SegmentHeader {
                schema: JOURNAL_SCHEMA,
                node: "ip-10-0-1-7".into(),
                from: at("2026-11-27T14:25:00Z"),
                to: at("2026-11-27T14:26:00Z"),
                stale: true,
                stale_since: Some(at("2026-11-27T14:24:10Z")),
                stale_reason: Some("connection refused".into()),
                written_by: "journal 0.1.0".into(),
            }),
            JournalLine::Pod(PodInterval {
                ip: "fd00::7".into(),
                namespace: "payments".into(),
                name: "api-5f7c-xk2p9".into(),
                uid: "u1".into(),
                owner: Some(Owner {
                    kind: "ReplicaSet".into(),
                    name: "api-5f7c".into(),
                }),
                workload: Some(Owner {
                    kind: "Deployment".into(),
                    name: "api".into(),
                }),
                labels: BTreeMap::from([("app".into(), "api".into())]),
                host_network: false,
                node: "ip-10-0-1-7".into(),
                valid_from: at("2026-11-27T14:02:11.5Z"),
                valid_to: None,
            }),
            JournalLine::Service(ServiceInterval {
                ip: "172.20.0.10".into(),
                namespace: "kube-system".into(),
                name: "kube-dns".into(),
                uid: "u2".into(),
                valid_from: at("2026-11-27T14:00:00Z"),
                valid_to: Some(at("2026-11-27T14:25:30Z")),
            }),
        ];
        for line in lines {
            let json = line.to_json();
            assert_eq!(JournalLine::parse(&json).unwrap(), line);
        }
    }

    #[test]
    fn a_newer_schema_is_refused_naming_the_fix() {
        let json = br#"{"record":"segment","schema":2,"node":"n","from":"2026-11-27T14:25:00Z","to":"2026-11-27T14:26:00Z","stale":false,"written_by":"journal 9"}"#;
        let err = JournalLine::parse(json).unwrap_err().to_string();
        assert!(
            err.contains("schema 2") && err.contains("newer captures"),
            "{err}"
        );
    }
}
