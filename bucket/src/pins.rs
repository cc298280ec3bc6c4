//! Pins: the flight recorder's contract. A pin is a window of time on a
//! selection of nodes, with a reason and a time to live; in pinned mode
//! (`UPLOAD_MODE=pinned`) each uploader keeps its captures on the node as a
//! ring and ships only those that overlap a pin that selects its node.
//!
//! Pins are small JSON objects in the bucket itself, written by `captures
//! pin` or by the Alertmanager receiver (`captures receive-alerts`), read by
//! every uploader (a list of the prefix every few seconds):
//!
//! ```text
//! <static prefix>pins/<id>.json
//! {"schema":1,"id":"20261204T031500Z-3f2a…","from":"…","to":"…",
//!  "selection":{"kind":"nodes","nodes":["node-a"],"pod":"shop/cart-0"},
//!  "reason":"HighLatency on cart","created_at":"…","created_by":"alertmanager",
//!  "expires_at":"…"}
//! ```
//!
//! The bucket is the one place pins live: they survive a restart of any
//! part, the uploader already holds S3 credentials (and no Kubernetes
//! token), and who may pin is an IAM question on the `pins/` prefix.
//!
//! A shipped pinned capture carries the S3 tags [`TAG_PINNED`]`=true` and
//! [`TAG_REASON`], so that a lifecycle rule keeps it longer than the rest.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The folder of pins, under the key template's static prefix.
pub const PINS_DIR: &str = "pins/";

/// The version of a pin's fields written by this build. A reader refuses a
/// newer one rather than guess at it.
pub const PIN_SCHEMA: u32 = 1;

/// The largest pin object read (a pin is a few hundred bytes).
pub const MAX_PIN_BYTES: usize = 16 * 1024;

/// The most pins an uploader keeps at once; more are refused by name, so
/// that its memory stays bounded whatever is written to the prefix.
pub const MAX_PINS: usize = 1_000;

/// The longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// The most nodes one pin names.
pub const MAX_NODES: usize = 1_000;

/// The longest window one pin may hold: a week.
pub const MAX_WINDOW_HOURS: i64 = 7 * 24;

/// The S3 tag every pinned capture carries (value `true`): the lifecycle
/// rule that keeps pinned captures longer filters on it.
pub const TAG_PINNED: &str = "pinned";

/// The S3 tag holding the (first) pin's reason, cut to what a tag allows.
pub const TAG_REASON: &str = "pin-reason";

/// The content type of a pin object.
pub const PIN_CONTENT_TYPE: &str = "application/json";

/// Which nodes a pin selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PinSelection {
    /// Every node.
    All,
    /// These nodes; `pod` says which pod they came from, for the record.
    Nodes {
        nodes: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pod: Option<String>,
    },
}

/// One pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub schema: u32,
    pub id: String,
    /// Start of the window.
    pub from: DateTime<Utc>,
    /// End of the window.
    pub to: DateTime<Utc>,
    pub selection: PinSelection,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    /// Who made it: a user name, or `alertmanager`.
    pub created_by: String,
    /// After this, uploaders ignore the pin (its captures are in the
    /// bucket by then, or were never kept).
    pub expires_at: DateTime<Utc>,
}

/// A pin that cannot be used, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(
        "pin is {0} bytes, more than the {MAX_PIN_BYTES} a pin may have; it is not a pin this tool wrote"
    )]
    TooLarge(usize),
    #[error("pin is not valid JSON of the expected fields: {0}")]
    Unreadable(#[from] serde_json::Error),
    #[error(
        "pin has schema {found}, newer than this build reads ({PIN_SCHEMA}); upgrade the uploader (or captures) to one that reads it"
    )]
    NewerSchema { found: u32 },
    #[error("pin window ends ({to}) before it starts ({from}); give --to after --from")]
    Backwards {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    #[error(
        "pin window is longer than {MAX_WINDOW_HOURS} hours; pin a shorter window (or several)"
    )]
    TooLong,
    #[error("pin reason is empty; say why the window matters (--reason)")]
    NoReason,
    #[error("pin reason is longer than {MAX_REASON_CHARS} characters; shorten it")]
    ReasonTooLong,
    #[error("pin selects no node; name nodes (--node), a pod (--pod), or --all")]
    NoNodes,
    #[error("pin names more than {MAX_NODES} nodes; use --all")]
    TooManyNodes,
    #[error("pin id {0:?} is not of the form <yyyymmddThhmmssZ>-<hex>")]
    BadId(String),
    #[error("pin expires ({expires_at}) before its window ends ({to}); give a longer --ttl")]
    ExpiresEarly {
        to: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
}

/// Where pins are listed from.
pub fn pins_prefix(static_prefix: &str) -> String {
    format!("{static_prefix}{PINS_DIR}")
}

/// Where the pin `id` lives.
pub fn pin_key(static_prefix: &str, id: &str) -> String {
    format!("{}{id}.json", pins_prefix(static_prefix))
}

/// A pin's id: the moment it is about, then 16 hex digits of a hash of
/// `seed`. The same seed and moment give the same id, so a source that
/// repeats itself (Alertmanager resends firing alerts) writes the same
/// object again rather than a second pin.
pub fn pin_id(moment: DateTime<Utc>, seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let hex = crate::hex(&digest);
    format!("{}-{}", moment.format("%Y%m%dT%H%M%SZ"), &hex[..16])
}

fn valid_id(id: &str) -> bool {
    let Some((stamp, hex)) = id.split_once('-') else {
        return false;
    };
    stamp.len() == 16
        && DateTime::parse_from_str(&format!("{stamp}+0000"), "%Y%m%dT%H%M%SZ%z").is_ok()
        && hex.len() == 16
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Pin {
    /// Reads a pin object; refuses one too large, of a newer schema, or
    /// invalid.
    pub fn parse(bytes: &[u8]) -> Result<Self, PinError> {
        if bytes.len() > MAX_PIN_BYTES {
            return Err(PinError::TooLarge(bytes.len()));
        }
        #[derive(Deserialize)]
        struct Schema {
            schema: u32,
        }
        let Schema { schema } = serde_json::from_slice(bytes)?;
        if schema > PIN_SCHEMA {
            return Err(PinError::NewerSchema { found: schema });
        }
        let pin: Pin = serde_json::from_slice(bytes)?;
        pin.validate()?;
        Ok(pin)
    }

    /// The object's body.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings, times and a vector always serializes.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Checks what a writer must hold to (and a reader checks again).
    pub fn validate(&self) -> Result<(), PinError> {
        if !valid_id(&self.id) {
            return Err(PinError::BadId(self.id.clone()));
        }
        if self.to < self.from {
            return Err(PinError::Backwards {
                from: self.from,
                to: self.to,
            });
        }
        if self.to - self.from > chrono::TimeDelta::hours(MAX_WINDOW_HOURS) {
            return Err(PinError::TooLong);
        }
        if self.reason.trim().is_empty() {
            return Err(PinError::NoReason);
        }
        if self.reason.chars().count() > MAX_REASON_CHARS {
            return Err(PinError::ReasonTooLong);
        }
        if self.expires_at < self.to {
            return Err(PinError::ExpiresEarly {
                to: self.to,
                expires_at: self.expires_at,
            });
        }
        match &self.selection {
            PinSelection::All => {}
            PinSelection::Nodes { nodes, .. } if nodes.is_empty() => return Err(PinError::NoNodes),
            PinSelection::Nodes { nodes, .. } if nodes.len() > MAX_NODES => {
                return Err(PinError::TooManyNodes);
            }
            PinSelection::Nodes { .. } => {}
        }
        // What a reader would refuse is never written.
        let size = self.to_json().len();
        if size > MAX_PIN_BYTES {
            return Err(PinError::TooLarge(size));
        }
        Ok(())
    }

    /// Whether the pin selects `node`.
    pub fn selects(&self, node: &str) -> bool {
        match &self.selection {
            PinSelection::All => true,
            PinSelection::Nodes { nodes, .. } => nodes.iter().any(|n| n == node),
        }
    }

    /// Whether a capture of `node` holding packets from `start` to `end`
    /// overlaps the pin's window (both ends included).
    pub fn covers(&self, node: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        self.selects(node) && start <= self.to && end >= self.from
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }

    /// The `x-amz-tagging` value for a capture shipped for this pin:
    /// `pinned=true&pin-reason=<reason>`, the reason cut to S3's 256
    /// characters and to the characters a tag value may hold.
    pub fn tagging(&self) -> String {
        let reason: String = self
            .reason
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || " +-=._:/@".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(256)
            .collect();
        format!(
            "{TAG_PINNED}=true&{TAG_REASON}={}",
            percent_encode(reason.trim())
        )
    }
}

/// Query-string encoding of a tag value (RFC 3986 unreserved kept).
fn percent_encode(value: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn pin(selection: PinSelection) -> Pin {
        let from = at("2026-12-04T03:00:00Z");
        Pin {
            schema: PIN_SCHEMA,
            id: pin_id(from, "seed"),
            from,
            to: at("2026-12-04T03:15:00Z"),
            selection,
            reason: "HighLatency on shop/cart (p99 > 2s)".to_owned(),
            created_at: at("2026-12-04T03:10:00Z"),
            created_by: "alice".to_owned(),
            expires_at: at("2026-12-11T03:10:00Z"),
        }
    }

    #[test]
    fn a_pin_round_trips_and_a_newer_schema_is_refused_by_name() {
        let p = pin(PinSelection::Nodes {
            nodes: vec!["node-a".into()],
            pod: Some("shop/cart-0".into()),
        });
        assert_eq!(Pin::parse(&p.to_json()).unwrap(), p);
        let mut newer: serde_json::Value = serde_json::from_slice(&p.to_json()).unwrap();
        newer["schema"] = 2.into();
        newer["something_new"] = "x".into();
        let err = Pin::parse(&serde_json::to_vec(&newer).unwrap()).unwrap_err();
        assert!(err.to_string().contains("schema 2"), "{err}");
        let err = Pin::parse(&vec![b' '; MAX_PIN_BYTES + 1]).unwrap_err();
        assert!(matches!(err, PinError::TooLarge(_)), "{err}");
    }

    #[test]
    fn a_capture_is_covered_when_it_overlaps_the_window_on_a_selected_node() {
        let p = pin(PinSelection::Nodes {
            nodes: vec!["node-a".into()],
            pod: None,
        });
        let covers = |node, s, e| p.covers(node, at(s), at(e));
        assert!(covers(
            "node-a",
            "2026-12-04T02:59:00Z",
            "2026-12-04T03:00:00Z"
        ));
        assert!(covers(
            "node-a",
            "2026-12-04T03:15:00Z",
            "2026-12-04T03:16:00Z"
        ));
        assert!(!covers(
            "node-a",
            "2026-12-04T02:58:00Z",
            "2026-12-04T02:59:59Z"
        ));
        assert!(!covers(
            "node-a",
            "2026-12-04T03:15:01Z",
            "2026-12-04T03:16:00Z"
        ));
        assert!(!covers(
            "node-b",
            "2026-12-04T03:05:00Z",
            "2026-12-04T03:06:00Z"
        ));
        assert!(pin(PinSelection::All).covers(
            "node-b",
            at("2026-12-04T03:05:00Z"),
            at("2026-12-04T03:06:00Z")
        ));
    }

    #[test]
    fn invalid_pins_are_refused_with_the_fix() {
        let mut p = pin(PinSelection::Nodes {
            nodes: vec![],
            pod: None,
        });
        assert!(p.validate().unwrap_err().to_string().contains("--all"));
        p.selection = PinSelection::All;
        p.to = at("2026-12-04T02:00:00Z");
        assert!(
            p.validate()
                .unwrap_err()
                .to_string()
                .contains("--to after --from")
        );
        p.to = at("2026-12-04T03:15:00Z");
        p.reason = " ".into();
        assert!(p.validate().unwrap_err().to_string().contains("--reason"));
        p.reason = "ok".into();
        p.created_by = "x".repeat(MAX_PIN_BYTES);
        assert!(matches!(p.validate(), Err(PinError::TooLarge(_))));
        p.created_by = "alice".into();
        p.id = "../../etc".into();
        assert!(matches!(p.validate(), Err(PinError::BadId(_))));
    }

    #[test]
    fn the_same_seed_and_moment_give_the_same_id_and_a_valid_key() {
        let t = at("2026-12-04T03:00:00Z");
        assert_eq!(pin_id(t, "fp-1"), pin_id(t, "fp-1"));
        assert_ne!(pin_id(t, "fp-1"), pin_id(t, "fp-2"));
        assert!(valid_id(&pin_id(t, "x")));
        assert!(
            pin_key("tcp-dumps/", &pin_id(t, "fp-1"))
                .starts_with("tcp-dumps/pins/20261204T030000Z-")
        );
    }

    #[test]
    fn tagging_keeps_only_what_a_tag_value_may_hold() {
        let mut p = pin(PinSelection::All);
        p.reason = "disk full? <yes> & more".into();
        assert_eq!(
            p.tagging(),
            "pinned=true&pin-reason=disk%20full_%20_yes_%20_%20more"
        );
    }
}
