//! The flight recorder (`--upload-mode pinned`): the pins this node must
//! honour, read from the bucket (`bucket::pins`, the contract), kept in a
//! local copy in the spool, and matched against captures.
//!
//! - [`PinBook`]: the pins in force that select this node, the local copy
//!   (`state/pins.json`, so a restart with the bucket unreachable still
//!   knows them), and how far the ring has already let captures expire (so
//!   that a late pin says what was gone);
//! - [`poll`]: one list of `<prefix>pins/` and a read of each new pin;
//! - [`PinBook::split`]: a scan's captures, into those a pin covers (to
//!   ship) and the ring (kept on the node, the oldest expiring under the
//!   spool budget: `budget.rs`).
//!
//! A capture covers `[start, last write]`: its name gives its start, its
//! modification time its last packet (tcpdump writes as packets come).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bucket::pins::{MAX_PIN_BYTES, MAX_PINS, Pin};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::failure::{self, FailureKind, UploadError};
use crate::find::Capture;
use crate::metrics::PinMetrics;

/// The local copy's schema.
const CACHE_SCHEMA: u32 = 1;

/// The most ring captures whose index is remembered as shipped
/// (`pinned-with-index`); past it the oldest are forgotten, which costs at
/// most one more PUT of the same index.
const MAX_INDEXED: usize = 50_000;

/// What a pin that arrived after part of its window expired logs (once per
/// pin and node).
pub const PARTLY_EXPIRED_LOG: &str =
    "pin arrived after part of its window had expired on this node: shipping what is left";

/// Logged for each capture the ring lets expire (not a loss: no pin
/// covered it; the fault ledger does not count it as dropped).
pub const EXPIRED_LOG: &str = "pinned mode: the oldest capture no pin covers expired from the ring to keep the spool under --max-spool-mb";

/// The pins of one node.
#[derive(Debug)]
pub struct PinBook {
    node: String,
    cache: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Pins in force that select this node, by key.
    pins: BTreeMap<String, Pin>,
    /// Every key listed and read (or refused), with its ETag: read again
    /// only when it changes.
    seen: HashMap<String, String>,
    /// The last write of the newest capture the ring let expire.
    expired_through: Option<DateTime<Utc>>,
    /// `pinned-with-index`: ring captures whose flow index is in the
    /// bucket (file names).
    indexed: BTreeSet<String>,
}

/// The local copy, in `state/pins.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Cache {
    schema: u32,
    pins: BTreeMap<String, Pin>,
    #[serde(default)]
    expired_through: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    indexed: BTreeSet<String>,
}

/// What a poll changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Polled {
    /// Pins new to this node.
    pub added: usize,
    pub removed: usize,
}

impl PinBook {
    /// The book of `node`, with the pins of its local copy in `cache` (if
    /// any: an unreadable copy is logged and ignored; the next poll
    /// rebuilds it).
    pub fn load(node: &str, cache: PathBuf) -> Self {
        let mut inner = Inner::default();
        match read_cache(&cache) {
            Ok(Some(saved)) => {
                let now = Utc::now();
                inner.pins = saved
                    .pins
                    .into_iter()
                    .filter(|(_, pin)| pin.validate().is_ok() && !pin.is_expired(now))
                    .take(MAX_PINS)
                    .collect();
                inner.expired_through = saved.expired_through;
                inner.indexed = saved.indexed.into_iter().take(MAX_INDEXED).collect();
                tracing::info!(pins = inner.pins.len(), cache = %cache.display(), "pins read from the local copy");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(cache = %cache.display(), error = %e, "local copy of the pins unreadable; ignoring it (the next poll of the bucket rebuilds it)")
            }
        }
        Self {
            node: node.to_owned(),
            cache,
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pins in force for this node.
    pub fn pins(&self) -> Vec<Pin> {
        self.lock().pins.values().cloned().collect()
    }

    /// The first pin (oldest made) in force that covers `[start, end]`.
    pub fn covering(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Option<Pin> {
        let now = Utc::now();
        self.lock()
            .pins
            .values()
            .filter(|p| !p.is_expired(now) && p.covers(&self.node, start, end))
            .min_by_key(|p| p.created_at)
            .cloned()
    }

    /// The pin covering a capture in `ready/`, if any.
    pub fn covering_capture(&self, capture: &Capture) -> Option<Pin> {
        let start = capture.name.start();
        self.covering(start, capture_end(&capture.path, start))
    }

    /// A scan's captures, into those a pin covers (to ship) and the ring
    /// (oldest first, each with its last write).
    pub fn split(&self, captures: Vec<Capture>) -> (Vec<Capture>, Vec<(Capture, DateTime<Utc>)>) {
        let mut covered = Vec::new();
        let mut ring = Vec::new();
        for capture in captures {
            let start = capture.name.start();
            let end = capture_end(&capture.path, start);
            if self.covering(start, end).is_some() {
                covered.push(capture);
            } else {
                ring.push((capture, end));
            }
        }
        ring.sort_by_key(|(c, _)| c.name);
        (covered, ring)
    }

    /// The ring let a capture whose last write was `end` expire.
    pub fn expired(&self, end: DateTime<Utc>) {
        let mut inner = self.lock();
        if inner.expired_through.is_none_or(|t| t < end) {
            inner.expired_through = Some(end);
        }
    }

    /// Whether the flow index of the ring capture `file` is in the bucket.
    pub fn is_indexed(&self, file: &str) -> bool {
        self.lock().indexed.contains(file)
    }

    /// The flow index of the ring capture `file` is in the bucket.
    pub fn indexed(&self, file: &str) {
        let mut inner = self.lock();
        inner.indexed.insert(file.to_owned());
        while inner.indexed.len() > MAX_INDEXED {
            inner.indexed.pop_first();
        }
    }

    /// Forgets the indexed captures no longer in `ready/`.
    pub fn retain_indexed(&self, in_ready: &BTreeSet<String>) {
        self.lock().indexed.retain(|f| in_ready.contains(f));
    }

    /// The last write of the newest capture the ring let expire.
    pub fn expired_through(&self) -> Option<DateTime<Utc>> {
        self.lock().expired_through
    }

    /// Writes the local copy (to a temporary name, then renamed).
    pub fn save(&self) -> std::io::Result<()> {
        let cache = {
            let inner = self.lock();
            Cache {
                schema: CACHE_SCHEMA,
                pins: inner.pins.clone(),
                expired_through: inner.expired_through,
                indexed: inner.indexed.clone(),
            }
        };
        let body = serde_json::to_vec(&cache).map_err(std::io::Error::other)?;
        let tmp = self.cache.with_extension("json.tmp");
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, &self.cache)
    }

    /// Takes a listing in: forgets pins no longer listed, and which keys
    /// need reading (new, or changed).
    fn listed(&self, listing: &[(String, String)]) -> (Vec<String>, usize) {
        let mut inner = self.lock();
        let listed: HashMap<&str, &str> = listing
            .iter()
            .map(|(k, e)| (k.as_str(), e.as_str()))
            .collect();
        let before = inner.pins.len();
        inner.pins.retain(|k, _| listed.contains_key(k.as_str()));
        let removed = before - inner.pins.len();
        inner.seen.retain(|k, _| listed.contains_key(k.as_str()));
        let to_read = listing
            .iter()
            .filter(|(k, e)| inner.seen.get(k) != Some(e))
            .map(|(k, _)| k.clone())
            .collect();
        (to_read, removed)
    }

    /// Takes a pin read from `key` in; returns whether it is new to this
    /// node. A pin whose window partly expired already is logged and
    /// counted.
    fn read(&self, key: &str, etag: &str, pin: Option<Pin>, metrics: &PinMetrics) -> bool {
        let mut inner = self.lock();
        inner.seen.insert(key.to_owned(), etag.to_owned());
        let Some(pin) = pin else {
            inner.pins.remove(key);
            return false;
        };
        if pin.is_expired(Utc::now()) || !pin.selects(&self.node) {
            inner.pins.remove(key);
            return false;
        }
        let new = inner.pins.insert(key.to_owned(), pin.clone()).is_none();
        if new && let Some(gone) = inner.expired_through.filter(|t| *t >= pin.from) {
            metrics.partly_expired.inc();
            tracing::warn!(
                pin = %pin.id,
                from = %pin.from,
                to = %pin.to,
                reason = %pin.reason,
                expired_through = %gone,
                already_gone = %format!("{} to {}", pin.from, gone.min(pin.to)),
                "{PARTLY_EXPIRED_LOG}"
            );
        }
        new
    }

    /// Drops expired pins; updates the gauge.
    fn prune(&self, metrics: &PinMetrics) {
        let now = Utc::now();
        let mut inner = self.lock();
        inner.pins.retain(|_, p| !p.is_expired(now));
        metrics
            .active
            .set(i64::try_from(inner.pins.len()).unwrap_or(i64::MAX));
    }
}

/// The last write of a capture (its last packet), or its start when that
/// cannot be read.
pub fn capture_end(path: &Path, start: DateTime<Utc>) -> DateTime<Utc> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(DateTime::<Utc>::from)
        .map_or(start, |end| end.max(start))
}

fn read_cache(path: &Path) -> std::io::Result<Option<Cache>> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // Capture file names are short: 64 bytes each is ample.
    let limit = u64::try_from(
        MAX_PINS
            .saturating_mul(MAX_PIN_BYTES)
            .saturating_add(MAX_INDEXED.saturating_mul(64)),
    )
    .unwrap_or(u64::MAX);
    let mut body = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut body)?;
    if body.len() as u64 > limit {
        return Err(std::io::Error::other(format!("larger than {limit} bytes")));
    }
    let cache: Cache = serde_json::from_slice(&body).map_err(std::io::Error::other)?;
    if cache.schema > CACHE_SCHEMA {
        return Err(std::io::Error::other(format!(
            "schema {} is newer than this build reads ({CACHE_SCHEMA})",
            cache.schema
        )));
    }
    Ok(Some(cache))
}

/// One poll: lists `<prefix>pins/` (at most [`MAX_PINS`] keys, more are
/// refused by name), reads each new or changed pin, forgets deleted ones,
/// and saves the local copy when something changed.
pub async fn poll(
    client: &aws_sdk_s3::Client,
    bucket_name: &str,
    static_prefix: &str,
    book: &PinBook,
    metrics: &PinMetrics,
) -> Result<Polled, UploadError> {
    metrics.polls.inc();
    // Pins expire (and the gauge holds) even while the bucket is away.
    book.prune(metrics);
    let prefix = bucket::pins::pins_prefix(static_prefix);
    let mut listing = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket_name)
            .prefix(&prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| failure::classify("ListObjectsV2 (pins)", &e))?;
        for object in page.contents() {
            let (Some(key), etag) = (object.key(), object.e_tag().unwrap_or_default()) else {
                continue;
            };
            if !key.ends_with(".json") {
                continue;
            }
            if listing.len() >= MAX_PINS {
                metrics.refused.inc();
                tracing::warn!(
                    key,
                    limit = MAX_PINS,
                    "more pins than an uploader keeps; this one and later ones are ignored: delete pins that are no longer needed (captures pins --delete)"
                );
                break;
            }
            listing.push((key.to_owned(), etag.to_owned()));
        }
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() || listing.len() >= MAX_PINS {
            break;
        }
    }
    let (to_read, removed) = book.listed(&listing);
    let etags: HashMap<&str, &str> = listing
        .iter()
        .map(|(k, e)| (k.as_str(), e.as_str()))
        .collect();
    let mut polled = Polled { added: 0, removed };
    for key in to_read {
        let pin = match read_pin(client, bucket_name, &key).await {
            Ok(pin) => Some(pin),
            Err(ReadError::Refused(why)) => {
                metrics.refused.inc();
                tracing::warn!(key, error = %why, "pin refused; it is ignored until it is rewritten (captures pin writes valid ones)");
                None
            }
            // Deleted between the list and the read.
            Err(ReadError::Gone) => None,
            Err(ReadError::Store(e)) => return Err(e),
        };
        let etag = etags.get(key.as_str()).copied().unwrap_or_default();
        if let Some(p) = &pin
            && p.selects(&book.node)
        {
            tracing::info!(pin = %p.id, from = %p.from, to = %p.to, reason = %p.reason, created_by = %p.created_by, "pin read");
        }
        if book.read(&key, etag, pin, metrics) {
            polled.added += 1;
        }
    }
    book.prune(metrics);
    if polled != Polled::default()
        && let Err(e) = book.save()
    {
        tracing::warn!(cache = %book.cache.display(), error = %e, "cannot write the local copy of the pins (a restart with the bucket unreachable would not know them)");
    }
    Ok(polled)
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Store(UploadError),
    #[error("gone")]
    Gone,
}

async fn read_pin(
    client: &aws_sdk_s3::Client,
    bucket_name: &str,
    key: &str,
) -> Result<Pin, ReadError> {
    let out = client
        .get_object()
        .bucket(bucket_name)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                ReadError::Gone
            } else {
                ReadError::Store(failure::classify("GetObject (pin)", &e))
            }
        })?;
    if out.content_length().unwrap_or(0) > i64::try_from(MAX_PIN_BYTES).unwrap_or(i64::MAX) {
        return Err(ReadError::Refused(format!(
            "{} bytes, more than the {MAX_PIN_BYTES} a pin may have",
            out.content_length().unwrap_or(0)
        )));
    }
    let body = out
        .body
        .collect()
        .await
        .map_err(|e| ReadError::Store(UploadError::new(FailureKind::Connection, e.to_string())))?
        .into_bytes();
    Pin::parse(&body).map_err(|e| ReadError::Refused(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bucket::pins::{PIN_SCHEMA, PinSelection, pin_id};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn pin(from: &str, to: &str, nodes: &[&str]) -> Pin {
        Pin {
            schema: PIN_SCHEMA,
            id: pin_id(at(from), to),
            from: at(from),
            to: at(to),
            selection: PinSelection::Nodes {
                nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
                pod: None,
            },
            reason: "test".into(),
            created_at: at(from),
            created_by: "test".into(),
            expires_at: Utc::now() + chrono::TimeDelta::days(1),
        }
    }

    #[test]
    fn pins_of_other_nodes_are_not_kept_and_the_local_copy_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("pins.json");
        let metrics = PinMetrics::default();
        let book = PinBook::load("node-a", cache.clone());
        let mine = pin("2026-12-04T03:00:00Z", "2026-12-04T03:10:00Z", &["node-a"]);
        let theirs = pin("2026-12-04T03:00:00Z", "2026-12-04T03:20:00Z", &["node-b"]);
        assert!(book.read("p/1.json", "e1", Some(mine.clone()), &metrics));
        assert!(!book.read("p/2.json", "e2", Some(theirs), &metrics));
        book.expired(at("2026-12-04T02:00:00Z"));
        book.save().unwrap();

        let again = PinBook::load("node-a", cache);
        assert_eq!(again.pins(), vec![mine]);
        assert_eq!(again.expired_through(), Some(at("2026-12-04T02:00:00Z")));
        assert!(
            again
                .covering(at("2026-12-04T03:09:00Z"), at("2026-12-04T03:11:00Z"))
                .is_some()
        );
        assert!(
            again
                .covering(at("2026-12-04T03:11:00Z"), at("2026-12-04T03:12:00Z"))
                .is_none()
        );
    }

    #[test]
    fn shipped_ring_indexes_survive_a_restart_and_captures_gone_from_ready_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("pins.json");
        let book = PinBook::load("node-a", cache.clone());
        book.indexed("20261204T030000Z.pcap");
        book.indexed("20261204T030100Z.pcap");
        book.save().unwrap();

        let again = PinBook::load("node-a", cache);
        assert!(again.is_indexed("20261204T030000Z.pcap"));
        assert!(again.is_indexed("20261204T030100Z.pcap"));
        again.retain_indexed(&BTreeSet::from(["20261204T030100Z.pcap".to_owned()]));
        assert!(!again.is_indexed("20261204T030000Z.pcap"));
        assert!(again.is_indexed("20261204T030100Z.pcap"));
    }

    #[test]
    fn a_pin_deleted_from_the_bucket_is_forgotten_and_only_changed_keys_are_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let book = PinBook::load("node-a", dir.path().join("pins.json"));
        let metrics = PinMetrics::default();
        let listing = vec![("p/1.json".to_owned(), "e1".to_owned())];
        let (to_read, _) = book.listed(&listing);
        assert_eq!(to_read, ["p/1.json"]);
        book.read(
            "p/1.json",
            "e1",
            Some(pin(
                "2026-12-04T03:00:00Z",
                "2026-12-04T03:10:00Z",
                &["node-a"],
            )),
            &metrics,
        );
        assert_eq!(
            book.listed(&listing).0,
            Vec::<String>::new(),
            "read again unchanged"
        );
        let (to_read, removed) = book.listed(&[]);
        assert!(to_read.is_empty());
        assert_eq!(removed, 1);
        assert!(book.pins().is_empty());
    }

    #[test]
    fn a_late_pin_is_counted_as_partly_expired() {
        let dir = tempfile::tempdir().unwrap();
        let book = PinBook::load("node-a", dir.path().join("pins.json"));
        let metrics = PinMetrics::default();
        book.expired(at("2026-12-04T03:05:00Z"));
        book.read(
            "p/early.json",
            "e",
            Some(pin(
                "2026-12-04T03:06:00Z",
                "2026-12-04T03:10:00Z",
                &["node-a"],
            )),
            &metrics,
        );
        assert_eq!(metrics.partly_expired.get(), 0);
        book.read(
            "p/late.json",
            "e",
            Some(pin(
                "2026-12-04T03:00:00Z",
                "2026-12-04T03:10:00Z",
                &["node-a"],
            )),
            &metrics,
        );
        assert_eq!(metrics.partly_expired.get(), 1);
    }
}
