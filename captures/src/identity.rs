//! Who held an address when: the identity journals read back
//! (`bucket::journal_record`'s schema, `bucket::journal_keys`' keys).
//!
//! [`Identities`] is built from every node's journal segments of a window
//! (not only the nodes asked for: the far end of a flow may be a pod on
//! another node). Each segment restates the intervals still open at its
//! end, so the restatements of one interval (same kind, uid, address and
//! `valid_from`) are merged into one: closed when any segment closed it,
//! open (held since, with no end known) otherwise.
//!
//! It answers two questions:
//! - [`Identities::resolve`]: the name of the pod, Service or node that held
//!   an address during a flow's time: one owner, [`Name::Ambiguous`] when
//!   several fall inside that time (an address reused), or
//!   [`Name::Unknown`] when no journal says. A `hostNetwork` pod shares its
//!   node's address: such an address is named as the node, not as any of
//!   the host-network pods on it. A name taken from a time when the node's
//!   journal was stale (the API server unreachable) says so.
//! - [`Identities::select`]: the (address, interval) pairs of a pod name
//!   prefix, a label selector or a Service, which the flow filter then
//!   matches ([`IpSelection::matches`]); a selection that matches nothing
//!   is refused, naming what was looked for and what is near it.
//!   [`Identities::nodes_of`] says on which nodes, and when, the selected
//!   pods ran.
//!
//! Journal objects are untrusted input (any node's role may write any
//! key): each is read as a stream within limits ([`MAX_DECOMPRESSED`],
//! [`MAX_LINE`]); one past them, or not a journal, is named and skipped.
//! At most [`MAX_INTERVALS`] distinct intervals are held: past that, more
//! are counted ([`Identities::dropped`]) and not kept, so some addresses
//! may then say "unknown" (narrow the window).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use bucket::journal_record::{JournalLine, JournalRecordError, SegmentHeader};
use chrono::{DateTime, Utc};
use flows::gz_lines::{GzLines, LineHandler, LineLimits, LinesError};
use serde::Serialize;

use crate::untrusted::escaped;
use crate::window::{Window, rfc3339};

/// The most one journal object may decompress to: a segment of a node
/// with a thousand pods and ten thousand Services is a few MiB.
pub const MAX_DECOMPRESSED: u64 = 256 << 20;
/// The longest line read (a record is under 2 KiB with its labels).
pub const MAX_LINE: usize = 64 << 10;
/// The most distinct intervals held at once (some 400 bytes each).
pub const MAX_INTERVALS: usize = 250_000;
/// Names listed in a refusal, as hints.
const MAX_HINTS: usize = 10;

/// Who held an address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Owner {
    Pod {
        namespace: String,
        name: String,
        node: String,
    },
    Service {
        namespace: String,
        name: String,
    },
    /// The node's own address, shared by its `hostNetwork` pods.
    Node {
        node: String,
    },
}

impl fmt::Display for Owner {
    /// Escaped ([`crate::untrusted`]): names come from the bucket.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pod {
                namespace, name, ..
            } => write!(f, "{}/{}", escaped(namespace), escaped(name)),
            Self::Service { namespace, name } => {
                write!(f, "service {}/{}", escaped(namespace), escaped(name))
            }
            Self::Node { node } => write!(f, "node {}", escaped(node)),
        }
    }
}

/// The answer to "who held this address then".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "resolution", rename_all = "snake_case")]
pub enum Name {
    /// One owner. `stale`: its node's journal did not know the API server's
    /// state for part of that time.
    Known { owner: Owner, stale: bool },
    /// Several owners inside the time asked about (an address reused).
    Ambiguous { owners: Vec<Owner>, stale: bool },
    /// No journal names the address then.
    Unknown { stale: bool },
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stale = match self {
            Self::Known { owner, stale } => {
                write!(f, "{owner}")?;
                *stale
            }
            Self::Ambiguous { owners, stale } => {
                f.write_str("ambiguous: ")?;
                for (i, owner) in owners.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    write!(f, "{owner}")?;
                }
                *stale
            }
            Self::Unknown { stale } => {
                f.write_str("unknown")?;
                *stale
            }
        };
        if stale {
            f.write_str(", journal stale")?;
        }
        Ok(())
    }
}

/// What `--pod`, `--selector` and `--service` ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    /// Pods of a namespace whose name starts with `name_prefix`.
    Pod {
        namespace: String,
        name_prefix: String,
    },
    /// Pods carrying every one of these labels (those the journal keeps:
    /// its `JOURNAL_LABELS` allow-list).
    Labels(BTreeMap<String, String>),
    /// A Service's cluster IPs.
    Service { namespace: String, name: String },
}

impl Select {
    /// `NAMESPACE/NAME` for `--pod` and `--service`.
    pub fn parse_pod(text: &str) -> Result<Self, String> {
        let (namespace, name_prefix) = split_namespaced("--pod", text)?;
        Ok(Self::Pod {
            namespace,
            name_prefix,
        })
    }

    pub fn parse_service(text: &str) -> Result<Self, String> {
        let (namespace, name) = split_namespaced("--service", text)?;
        Ok(Self::Service { namespace, name })
    }

    /// `key=value[,key=value…]`.
    pub fn parse_selector(text: &str) -> Result<Self, String> {
        let mut labels = BTreeMap::new();
        for part in text.split(',') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!(
                    "--selector {text:?}: {part:?} is not key=value (e.g. --selector app=api,tier=web)"
                ));
            };
            let (key, value) = (key.trim(), value.trim().trim_start_matches('='));
            if key.is_empty() {
                return Err(format!("--selector {text:?}: a label has no key"));
            }
            labels.insert(key.to_owned(), value.to_owned());
        }
        Ok(Self::Labels(labels))
    }
}

impl fmt::Display for Select {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pod {
                namespace,
                name_prefix,
            } => write!(f, "pod {namespace}/{name_prefix}*"),
            Self::Labels(labels) => {
                let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "pods with labels {}", parts.join(","))
            }
            Self::Service { namespace, name } => write!(f, "service {namespace}/{name}"),
        }
    }
}

fn split_namespaced(flag: &str, text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
            Ok((namespace.to_owned(), name.to_owned()))
        }
        _ => Err(format!(
            "{flag} {text:?} is not NAMESPACE/NAME (e.g. {flag} payments/api-5f7c)"
        )),
    }
}

/// One address held over an interval by an owner (`to`: `None` while still
/// held at the last segment read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpSpan {
    pub ip: IpAddr,
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
    pub owner: Owner,
}

impl IpSpan {
    /// Whether the span shares a moment with `[first, last]`.
    pub fn overlaps(&self, first: DateTime<Utc>, last: DateTime<Utc>) -> bool {
        self.from <= last && self.to.is_none_or(|to| to >= first)
    }
}

/// The addresses a selection resolved to, each over its interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSelection {
    /// What was asked for, for messages.
    pub asked: String,
    /// In address order, then by start.
    pub spans: Vec<IpSpan>,
}

impl IpSelection {
    /// Whether `ip` was one of the selected addresses at some moment of
    /// `[first, last]`.
    pub fn matches(&self, ip: IpAddr, first: DateTime<Utc>, last: DateTime<Utc>) -> bool {
        // `spans` is in address order (see [`Identities::select`]).
        let at = self.spans.partition_point(|s| s.ip < ip);
        self.spans[at..]
            .iter()
            .take_while(|s| s.ip == ip)
            .any(|s| s.overlaps(first, last))
    }
}

/// Where and when a selected pod ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeSpan {
    pub node: String,
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
}

/// A journal object that was not read, and why.
#[derive(Debug, Clone, Serialize)]
pub struct RefusedJournal {
    pub key: String,
    pub reason: String,
    /// Written by a newer journal: this `captures` must be upgraded to
    /// read it (a selection is then refused; names go on without it).
    pub newer_schema: bool,
}

/// Why a journal object, or a selection, was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "no identity journal covers {from} .. {to} under {journal}: {asked} cannot be resolved (the journal container writes them; see docs/deploy.md); select with --host instead"
    )]
    NoJournal {
        asked: String,
        from: String,
        to: String,
        journal: String,
    },
    #[error("{asked}: {detail}")]
    NothingMatches { asked: String, detail: String },
}

/// A journal object cannot be read (the caller names it and goes on).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("decompresses to more than {0} bytes (a journal segment is a few MiB)")]
    TooLarge(u64),
    #[error("has a line longer than {limit} bytes at line {line}")]
    LineTooLong { line: u64, limit: usize },
    #[error("is not gzip: {0}")]
    Gzip(std::io::Error),
    #[error("line {line}: {source}")]
    Record {
        line: u64,
        source: JournalRecordError,
    },
    #[error("does not start with a segment header")]
    NoHeader,
}

impl ReadError {
    /// A newer schema is not the object's fault: the reader must be newer.
    pub fn is_newer_schema(&self) -> bool {
        matches!(
            self,
            Self::Record {
                source: JournalRecordError::NewerSchema { .. },
                ..
            }
        )
    }
}

/// Stretches of time, `[from, to]`.
type Periods = Vec<(DateTime<Utc>, DateTime<Utc>)>;

/// The merge key of an interval's restatements.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct IntervalKey {
    service: bool,
    uid: String,
    ip: IpAddr,
    valid_from: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Interval {
    owner: Owner,
    /// The pod itself, also for a host-network pod (whose `owner` is its
    /// node): what `--pod` and `nodes_of` select.
    pod: Option<(String, String, String)>,
    labels: BTreeMap<String, String>,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
}

/// The identity journals of a window, merged.
#[derive(Debug, Default)]
pub struct Identities {
    intervals: HashMap<IntervalKey, Interval>,
    by_ip: BTreeMap<IpAddr, Vec<IntervalKey>>,
    /// Per node: the times its journal was stale.
    stale: BTreeMap<String, Periods>,
    dropped: u64,
    segments: u64,
    /// Objects not read, named for the person.
    pub refused: Vec<RefusedJournal>,
}

impl Identities {
    pub fn new() -> Self {
        Self::default()
    }

    /// Segments read.
    pub fn segments(&self) -> u64 {
        self.segments
    }

    /// Intervals past [`MAX_INTERVALS`], not kept.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether any segment was read at all.
    pub fn is_empty(&self) -> bool {
        self.segments == 0
    }

    /// Reads one journal object's bytes (gzip JSON lines), streamed through
    /// [`SegmentReader`]. On a refusal nothing of the object is kept.
    pub fn add_object(&mut self, bytes: &[u8]) -> Result<(), ReadError> {
        let mut reader = SegmentReader::new();
        for chunk in bytes.chunks(64 << 10) {
            reader.feed(chunk)?;
        }
        self.add(reader.finish()?);
        Ok(())
    }

    /// Adds a segment read by a [`SegmentReader`].
    pub fn add(&mut self, segment: ReadSegment) {
        let ReadSegment { header, lines } = segment;
        self.segments += 1;
        if header.stale {
            let since = header.stale_since.unwrap_or(header.from).min(header.from);
            self.stale
                .entry(header.node.clone())
                .or_default()
                .push((since, header.to));
        }
        for line in lines {
            let Some((key, interval)) = interval_of(line) else {
                continue;
            };
            if let Some(held) = self.intervals.get_mut(&key) {
                // A restatement: closed wins over open (the interval ended).
                if let Some(to) = interval.to {
                    held.to = Some(held.to.map_or(to, |t| t.min(to)));
                }
                continue;
            }
            if self.intervals.len() >= MAX_INTERVALS {
                self.dropped += 1;
                continue;
            }
            self.by_ip.entry(key.ip).or_default().push(key.clone());
            self.intervals.insert(key, interval);
        }
    }

    fn spans_of(&self, ip: IpAddr) -> impl Iterator<Item = &Interval> {
        self.by_ip
            .get(&ip)
            .into_iter()
            .flatten()
            .filter_map(|k| self.intervals.get(k))
    }

    fn stale_on(&self, node: &str, first: DateTime<Utc>, last: DateTime<Utc>) -> bool {
        self.stale
            .get(node)
            .is_some_and(|s| s.iter().any(|(from, to)| *from <= last && *to >= first))
    }

    fn any_stale(&self, first: DateTime<Utc>, last: DateTime<Utc>) -> bool {
        self.stale
            .keys()
            .any(|node| self.stale_on(node, first, last))
    }

    /// Who held `ip` during `[first, last]` (a flow's or a packet's time).
    pub fn resolve(&self, ip: IpAddr, first: DateTime<Utc>, last: DateTime<Utc>) -> Name {
        let owners: BTreeSet<&Owner> = self
            .spans_of(ip)
            .filter(|i| i.from <= last && i.to.is_none_or(|to| to >= first))
            .map(|i| &i.owner)
            .collect();
        let stale_of = |owner: &Owner| match owner {
            Owner::Pod { node, .. } | Owner::Node { node } => self.stale_on(node, first, last),
            Owner::Service { .. } => false,
        };
        let stale = owners.iter().any(|o| stale_of(o));
        match owners.len() {
            0 => Name::Unknown {
                stale: self.any_stale(first, last),
            },
            1 => Name::Known {
                owner: owners.into_iter().next().cloned().unwrap_or(Owner::Node {
                    node: String::new(),
                }),
                stale,
            },
            _ => Name::Ambiguous {
                owners: owners.into_iter().cloned().collect(),
                stale,
            },
        }
    }

    /// Each address held during `window` and its name over the whole
    /// window (for a name-resolution block, which has one name per address
    /// for the whole file: an address reused within the window is named
    /// `ambiguous: … or …`), in address order.
    pub fn names_over(&self, window: &Window) -> Vec<(IpAddr, String)> {
        self.by_ip
            .keys()
            .filter_map(|ip| match self.resolve(*ip, window.from, window.to) {
                Name::Unknown { .. } => None,
                name => Some((*ip, name.to_string())),
            })
            .collect()
    }

    /// The (address, interval) pairs of a selection that overlap `window`,
    /// refused when there are none.
    pub fn select(&self, what: &Select, window: &Window) -> Result<IpSelection, IdentityError> {
        let spans: Vec<IpSpan> = self
            .matching(what, window)
            .map(|(key, i)| IpSpan {
                ip: key.ip,
                from: i.from,
                to: i.to,
                owner: i.owner.clone(),
            })
            .collect();
        if spans.is_empty() {
            return Err(self.nothing_matches(what, window));
        }
        let mut spans = spans;
        spans.sort_by_key(|a| (a.ip, a.from));
        Ok(IpSelection {
            asked: what.to_string(),
            spans,
        })
    }

    /// The nodes where the selected pods ran during `window`, and when
    /// (one entry per node and interval, in time order). For the flight
    /// recorder (`captures pin --pod`) and `list --pod`. A Service runs on
    /// no node: it selects nothing here.
    pub fn nodes_of(&self, what: &Select, window: &Window) -> Result<Vec<NodeSpan>, IdentityError> {
        if let Select::Service { .. } = what {
            return Err(IdentityError::NothingMatches {
                asked: what.to_string(),
                detail: "a Service runs on no node; select its pods with --pod or --selector"
                    .to_owned(),
            });
        }
        let mut spans: Vec<NodeSpan> = self
            .matching(what, window)
            .filter_map(|(_, i)| {
                let (_, _, node) = i.pod.as_ref()?;
                Some(NodeSpan {
                    node: node.clone(),
                    from: i.from,
                    to: i.to,
                })
            })
            .collect();
        if spans.is_empty() {
            return Err(self.nothing_matches(what, window));
        }
        spans.sort_by(|a, b| (&a.node, a.from).cmp(&(&b.node, b.from)));
        spans.dedup();
        Ok(spans)
    }

    fn matching<'a>(
        &'a self,
        what: &'a Select,
        window: &'a Window,
    ) -> impl Iterator<Item = (&'a IntervalKey, &'a Interval)> + 'a {
        self.intervals.iter().filter(move |(key, i)| {
            let in_window = i.from <= window.to && i.to.is_none_or(|to| to >= window.from);
            in_window
                && match what {
                    Select::Pod {
                        namespace,
                        name_prefix,
                    } => i
                        .pod
                        .as_ref()
                        .is_some_and(|(ns, name, _)| ns == namespace && name.starts_with(name_prefix.as_str())),
                    Select::Labels(labels) => {
                        i.pod.is_some() && labels.iter().all(|(k, v)| i.labels.get(k) == Some(v))
                    }
                    Select::Service { namespace, name } => {
                        key.service
                            && matches!(&i.owner, Owner::Service { namespace: ns, name: n } if ns == namespace && n == name)
                    }
                }
        })
    }

    /// The refusal of a selection that matched nothing: what was looked
    /// for, and what the journals hold near it.
    fn nothing_matches(&self, what: &Select, window: &Window) -> IdentityError {
        let asked = what.to_string();
        let when = format!(
            "between {} and {}",
            rfc3339(window.from),
            rfc3339(window.to)
        );
        let detail = match what {
            Select::Pod {
                namespace,
                name_prefix,
            } => {
                let in_window =
                    |i: &&Interval| i.from <= window.to && i.to.is_none_or(|to| to >= window.from);
                let names: BTreeSet<&str> = self
                    .intervals
                    .values()
                    .filter(in_window)
                    .filter_map(|i| i.pod.as_ref())
                    .filter(|(ns, _, _)| ns == namespace)
                    .map(|(_, name, _)| name.as_str())
                    .collect();
                let anytime: BTreeSet<&str> = self
                    .intervals
                    .values()
                    .filter_map(|i| i.pod.as_ref())
                    .filter(|(ns, name, _)| {
                        ns == namespace && name.starts_with(name_prefix.as_str())
                    })
                    .map(|(_, name, _)| name.as_str())
                    .collect();
                if !anytime.is_empty() {
                    format!(
                        "held no address {when}, though the journals read name {} near that time: widen the window",
                        hints(anytime.into_iter().map(str::to_owned), name_prefix)
                    )
                } else if names.is_empty() {
                    let namespaces: BTreeSet<&str> = self
                        .intervals
                        .values()
                        .filter_map(|i| i.pod.as_ref())
                        .map(|(ns, _, _)| ns.as_str())
                        .collect();
                    format!(
                        "no pod of namespace {} is in the identity journals {when}; namespaces there: {}",
                        escaped(namespace),
                        hints(namespaces.into_iter().map(str::to_owned), namespace)
                    )
                } else {
                    format!(
                        "no such pod in the identity journals {when}; pods of {} then, closest first: {}",
                        escaped(namespace),
                        hints(names.into_iter().map(str::to_owned), name_prefix)
                    )
                }
            }
            Select::Labels(labels) => {
                let mut kept: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
                for i in self.intervals.values() {
                    for (k, v) in &i.labels {
                        kept.entry(k.as_str()).or_default().insert(v.as_str());
                    }
                }
                let missing: Vec<&str> = labels
                    .keys()
                    .map(String::as_str)
                    .filter(|k| !kept.contains_key(k))
                    .collect();
                if missing.is_empty() {
                    let values: Vec<String> = labels
                        .keys()
                        .filter_map(|k| {
                            kept.get(k.as_str()).map(|vs| {
                                format!(
                                    "{}={}",
                                    escaped(k),
                                    hints(vs.iter().map(|v| (*v).to_owned()), "")
                                )
                            })
                        })
                        .collect();
                    format!(
                        "no pod with these labels {when}; values the journals hold: {}",
                        values.join("; ")
                    )
                } else {
                    format!(
                        "the journals keep no label {} (they keep only the labels of the journal's JOURNAL_LABELS allow-list: {}); add it there, or select with --pod",
                        missing.join(", "),
                        hints(kept.keys().map(|k| (*k).to_owned()), "")
                    )
                }
            }
            Select::Service { namespace, name } => {
                let services: BTreeSet<String> = self
                    .intervals
                    .values()
                    .filter_map(|i| match &i.owner {
                        Owner::Service {
                            namespace: ns,
                            name,
                        } if ns == namespace => Some(name.clone()),
                        _ => None,
                    })
                    .collect();
                format!(
                    "no such Service in the identity journals {when}; Services of {}: {}",
                    escaped(namespace),
                    hints(services.into_iter(), name)
                )
            }
        };
        IdentityError::NothingMatches { asked, detail }
    }
}

/// Up to [`MAX_HINTS`] names, those sharing the longest start with `near`
/// first, escaped; "none" for none.
fn hints(names: impl Iterator<Item = String>, near: &str) -> String {
    let mut names: Vec<String> = names.collect();
    if names.is_empty() {
        return "none".to_owned();
    }
    let shared = |n: &str| {
        n.chars()
            .zip(near.chars())
            .take_while(|(a, b)| a == b)
            .count()
    };
    names.sort_by(|a, b| shared(b).cmp(&shared(a)).then_with(|| a.cmp(b)));
    let more = names.len().saturating_sub(MAX_HINTS);
    let mut out: Vec<String> = names
        .iter()
        .take(MAX_HINTS)
        .map(|n| escaped(n).to_string())
        .collect();
    if more > 0 {
        out.push(format!("and {more} more"));
    }
    out.join(", ")
}

/// One journal line as an interval and its merge key; the header and
/// unparseable addresses give none.
fn interval_of(line: JournalLine) -> Option<(IntervalKey, Interval)> {
    match line {
        JournalLine::Segment(_) => None,
        JournalLine::Pod(p) => {
            let ip: IpAddr = p.ip.parse().ok()?;
            let owner = if p.host_network {
                Owner::Node {
                    node: p.node.clone(),
                }
            } else {
                Owner::Pod {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    node: p.node.clone(),
                }
            };
            Some((
                IntervalKey {
                    service: false,
                    uid: p.uid,
                    ip,
                    valid_from: p.valid_from,
                },
                Interval {
                    owner,
                    pod: Some((p.namespace, p.name, p.node)),
                    labels: p.labels,
                    from: p.valid_from,
                    to: p.valid_to,
                },
            ))
        }
        JournalLine::Service(s) => {
            let ip: IpAddr = s.ip.parse().ok()?;
            Some((
                IntervalKey {
                    service: true,
                    uid: s.uid,
                    ip,
                    valid_from: s.valid_from,
                },
                Interval {
                    owner: Owner::Service {
                        namespace: s.namespace,
                        name: s.name,
                    },
                    pod: None,
                    labels: BTreeMap::new(),
                    from: s.valid_from,
                    to: s.valid_to,
                },
            ))
        }
    }
}

/// A segment read whole: its header and lines.
#[derive(Debug, Clone)]
pub struct ReadSegment {
    pub header: SegmentHeader,
    pub lines: Vec<JournalLine>,
}

/// Reads one journal object as its bytes arrive ([`flows::gz_lines`]:
/// gzip undone in a fixed window, lines split with a length limit and
/// parsed as they end). The lines are kept until [`SegmentReader::finish`]
/// (bounded by [`MAX_DECOMPRESSED`]), so that a refused object adds
/// nothing.
#[derive(Debug)]
pub struct SegmentReader {
    lines: GzLines<Segment>,
}

/// The header, then the records of a segment.
#[derive(Debug, Default)]
struct Segment {
    header: Option<SegmentHeader>,
    records: Vec<JournalLine>,
}

/// Why a line of a segment was refused.
enum LineRefused {
    Record(JournalRecordError),
    NoHeader,
}

impl LineHandler for Segment {
    type Error = LineRefused;
    fn line(&mut self, line: &[u8]) -> Result<(), LineRefused> {
        let line = JournalLine::parse(line).map_err(LineRefused::Record)?;
        match (line, &self.header) {
            (JournalLine::Segment(h), None) => self.header = Some(h),
            (JournalLine::Segment(_), Some(_)) | (_, None) => return Err(LineRefused::NoHeader),
            (record, Some(_)) => self.records.push(record),
        }
        Ok(())
    }
}

impl From<LinesError<LineRefused>> for ReadError {
    fn from(e: LinesError<LineRefused>) -> Self {
        match e {
            LinesError::TooLarge { limit } => Self::TooLarge(limit),
            LinesError::LineTooLong { line, limit } => Self::LineTooLong { line, limit },
            LinesError::Gzip(e) => Self::Gzip(e),
            LinesError::Line {
                line,
                error: LineRefused::Record(source),
            } => Self::Record { line, source },
            LinesError::Line {
                error: LineRefused::NoHeader,
                ..
            } => Self::NoHeader,
        }
    }
}

impl Default for SegmentReader {
    fn default() -> Self {
        Self::new()
    }
}

impl SegmentReader {
    pub fn new() -> Self {
        let limits = LineLimits {
            max_decompressed: MAX_DECOMPRESSED,
            max_line: MAX_LINE,
        };
        Self {
            lines: GzLines::new(limits, Segment::default()),
        }
    }

    /// The next compressed bytes of the object.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ReadError> {
        Ok(self.lines.feed(chunk)?)
    }

    /// The object ended: its last line is read too.
    pub fn finish(self) -> Result<ReadSegment, ReadError> {
        let (_, segment) = self.lines.finish()?;
        let header = segment.header.ok_or(ReadError::NoHeader)?;
        Ok(ReadSegment {
            header,
            lines: segment.records,
        })
    }
}

/// Flow-index records serialized each with `src_owner` and `dst_owner`
/// (a [`Name`] for the flow's time), resolved as they are written: nothing
/// more is held than the records themselves (`find --json` over a large
/// window). Without identities, the records as they are.
#[derive(Debug, Clone, Copy)]
pub struct NamedFlows<'a> {
    pub flows: &'a [flows::FlowRecord],
    pub identities: Option<&'a Identities>,
}

#[derive(Serialize)]
struct NamedFlow<'a> {
    #[serde(flatten)]
    flow: &'a flows::FlowRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_owner: Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst_owner: Option<Name>,
}

impl Serialize for NamedFlows<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq as _;
        let mut seq = serializer.serialize_seq(Some(self.flows.len()))?;
        for flow in self.flows {
            let name = |ip| {
                self.identities
                    .map(|ids| ids.resolve(ip, flow.first, flow.last))
            };
            seq.serialize_element(&NamedFlow {
                flow,
                src_owner: name(flow.src),
                dst_owner: name(flow.dst),
            })?;
        }
        seq.end()
    }
}

/// Adds `<src>_owner` and `<dst>_owner` (a [`Name`]) to each object of
/// `value[field]` that has `src`, `dst`, `first` and `last` (flow-index
/// records, as `find --json` and `explain --json` print them).
pub fn name_flows_json(value: &mut serde_json::Value, field: &str, identities: &Identities) {
    let Some(flows) = value.get_mut(field).and_then(|f| f.as_array_mut()) else {
        return;
    };
    for flow in flows {
        let Some(object) = flow.as_object_mut() else {
            continue;
        };
        let time = |k: &str| {
            object
                .get(k)
                .and_then(|v| v.as_str())
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let (Some(first), Some(last)) = (time("first"), time("last")) else {
            continue;
        };
        for end in ["src", "dst"] {
            let ip = object
                .get(end)
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<IpAddr>().ok());
            if let Some(ip) = ip {
                let name = identities.resolve(ip, first, last);
                if let Ok(named) = serde_json::to_value(name) {
                    object.insert(format!("{end}_owner"), named);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bucket::journal_record::{JOURNAL_SCHEMA, PodInterval, ServiceInterval};
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write as _;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn header(node: &str, from: &str, to: &str, stale: bool) -> JournalLine {
        JournalLine::Segment(SegmentHeader {
            schema: JOURNAL_SCHEMA,
            node: node.into(),
            from: at(from),
            to: at(to),
            stale,
            stale_since: None,
            stale_reason: None,
            written_by: "test".into(),
        })
    }

    fn pod(ip: &str, name: &str, uid: &str, from: &str, to: Option<&str>) -> JournalLine {
        JournalLine::Pod(PodInterval {
            ip: ip.into(),
            namespace: "payments".into(),
            name: name.into(),
            uid: uid.into(),
            owner: None,
            workload: None,
            labels: BTreeMap::from([("app".into(), "api".into())]),
            host_network: false,
            node: "n1".into(),
            valid_from: at(from),
            valid_to: to.map(at),
        })
    }

    fn gz(lines: &[JournalLine]) -> Vec<u8> {
        let mut w = GzEncoder::new(Vec::new(), Compression::fast());
        for l in lines {
            w.write_all(&l.to_json()).unwrap();
            w.write_all(b"\n").unwrap();
        }
        w.finish().unwrap()
    }

    /// 10.0.3.7 is api-a's until 14:03:00, then api-b's from 14:03:30; a
    /// second segment restates api-b's open interval.
    fn reused() -> Identities {
        let mut ids = Identities::new();
        ids.add_object(&gz(&[
            header("n1", "2026-11-27T14:02:00Z", "2026-11-27T14:04:00Z", false),
            pod(
                "10.0.3.7",
                "api-a-1",
                "ua",
                "2026-11-27T14:00:00Z",
                Some("2026-11-27T14:03:00Z"),
            ),
            pod("10.0.3.7", "api-b-1", "ub", "2026-11-27T14:03:30Z", None),
        ]))
        .unwrap();
        ids.add_object(&gz(&[
            header("n1", "2026-11-27T14:04:00Z", "2026-11-27T14:05:00Z", true),
            pod("10.0.3.7", "api-b-1", "ub", "2026-11-27T14:03:30Z", None),
            JournalLine::Service(ServiceInterval {
                ip: "172.20.0.10".into(),
                namespace: "kube-system".into(),
                name: "kube-dns".into(),
                uid: "s".into(),
                valid_from: at("2026-11-27T00:00:00Z"),
                valid_to: None,
            }),
        ]))
        .unwrap();
        ids
    }

    #[test]
    fn an_address_reused_is_named_by_the_flows_time_and_ambiguous_across_both() {
        let ids = reused();
        let ip: IpAddr = "10.0.3.7".parse().unwrap();
        let name = |a, b| ids.resolve(ip, at(a), at(b)).to_string();
        assert_eq!(
            name("2026-11-27T14:02:10Z", "2026-11-27T14:02:20Z"),
            "payments/api-a-1"
        );
        assert_eq!(
            name("2026-11-27T14:03:40Z", "2026-11-27T14:03:50Z"),
            "payments/api-b-1"
        );
        assert_eq!(
            name("2026-11-27T14:02:50Z", "2026-11-27T14:03:40Z"),
            "ambiguous: payments/api-a-1 or payments/api-b-1"
        );
        assert_eq!(
            name("2026-11-27T14:03:10Z", "2026-11-27T14:03:20Z"),
            "unknown"
        );
        assert_eq!(
            name("2026-11-27T14:04:10Z", "2026-11-27T14:04:20Z"),
            "payments/api-b-1, journal stale"
        );
        assert_eq!(
            ids.resolve(
                "10.9.9.9".parse().unwrap(),
                at("2026-11-27T14:02:10Z"),
                at("2026-11-27T14:02:20Z")
            ),
            Name::Unknown { stale: false }
        );
        assert_eq!(
            ids.resolve(
                "172.20.0.10".parse().unwrap(),
                at("2026-11-27T14:02:10Z"),
                at("2026-11-27T14:02:20Z")
            )
            .to_string(),
            "service kube-system/kube-dns"
        );
        assert_eq!(ids.intervals.len(), 3, "a restated interval is held once");
    }

    #[test]
    fn a_pod_prefix_selects_only_its_own_interval_of_a_reused_address() {
        let ids = reused();
        let w = Window::new(at("2026-11-27T14:00:00Z"), at("2026-11-27T14:10:00Z")).unwrap();
        let sel = ids
            .select(&Select::parse_pod("payments/api-a").unwrap(), &w)
            .unwrap();
        let ip: IpAddr = "10.0.3.7".parse().unwrap();
        assert_eq!(sel.spans.len(), 1);
        assert!(sel.matches(ip, at("2026-11-27T14:02:10Z"), at("2026-11-27T14:02:20Z")));
        assert!(!sel.matches(ip, at("2026-11-27T14:03:40Z"), at("2026-11-27T14:03:50Z")));
        assert_eq!(
            ids.nodes_of(&Select::parse_pod("payments/api-a").unwrap(), &w)
                .unwrap(),
            vec![NodeSpan {
                node: "n1".into(),
                from: at("2026-11-27T14:00:00Z"),
                to: Some(at("2026-11-27T14:03:00Z"))
            }]
        );
        let by_label = ids
            .select(&Select::parse_selector("app=api").unwrap(), &w)
            .unwrap();
        assert_eq!(by_label.spans.len(), 2);
        let svc = ids
            .select(&Select::parse_service("kube-system/kube-dns").unwrap(), &w)
            .unwrap();
        assert_eq!(svc.spans[0].ip, "172.20.0.10".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_selection_that_matches_nothing_is_refused_naming_what_is_near() {
        let ids = reused();
        let w = Window::new(at("2026-11-27T14:00:00Z"), at("2026-11-27T14:10:00Z")).unwrap();
        let e = ids
            .select(&Select::parse_pod("payments/api-c").unwrap(), &w)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pod payments/api-c*") && e.contains("api-a-1, api-b-1"),
            "{e}"
        );
        let e = ids
            .select(&Select::parse_pod("shop/api").unwrap(), &w)
            .unwrap_err()
            .to_string();
        assert!(e.contains("namespaces there: payments"), "{e}");
        let e = ids
            .select(&Select::parse_selector("team=x").unwrap(), &w)
            .unwrap_err()
            .to_string();
        assert!(e.contains("JOURNAL_LABELS") && e.contains("app"), "{e}");
        let late = Window::new(at("2026-11-27T13:00:00Z"), at("2026-11-27T13:10:00Z")).unwrap();
        let e = ids
            .select(&Select::parse_pod("payments/api-a").unwrap(), &late)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("widen the window") && e.contains("api-a-1"),
            "{e}"
        );
        assert!(Select::parse_pod("api").is_err());
        assert!(Select::parse_selector("app").is_err());
    }

    #[test]
    fn host_network_pods_are_named_as_their_node() {
        let mut ids = Identities::new();
        let host = |name: &str, uid: &str| {
            let JournalLine::Pod(mut p) = pod("10.0.1.7", name, uid, "2026-11-27T14:00:00Z", None)
            else {
                unreachable!()
            };
            p.host_network = true;
            JournalLine::Pod(p)
        };
        ids.add_object(&gz(&[
            header("n1", "2026-11-27T14:00:00Z", "2026-11-27T14:01:00Z", false),
            host("kube-proxy-x", "k"),
            host("aws-node-y", "a"),
        ]))
        .unwrap();
        assert_eq!(
            ids.resolve(
                "10.0.1.7".parse().unwrap(),
                at("2026-11-27T14:00:10Z"),
                at("2026-11-27T14:00:20Z")
            )
            .to_string(),
            "node n1"
        );
    }

    #[test]
    fn hostile_or_newer_objects_are_refused_and_add_nothing() {
        let mut ids = Identities::new();
        let newer = br#"{"record":"segment","schema":99,"node":"n","from":"2026-11-27T14:25:00Z","to":"2026-11-27T14:26:00Z","stale":false,"written_by":"journal 9"}"#;
        let mut w = GzEncoder::new(Vec::new(), Compression::fast());
        w.write_all(newer).unwrap();
        let e = ids.add_object(&w.finish().unwrap()).unwrap_err();
        assert!(
            e.is_newer_schema() && e.to_string().contains("schema 99"),
            "{e}"
        );
        // One endless line.
        let mut w = GzEncoder::new(Vec::new(), Compression::fast());
        for _ in 0..16 {
            w.write_all(&[b'x'; 1 << 16]).unwrap();
        }
        let e = ids.add_object(&w.finish().unwrap()).unwrap_err();
        assert!(matches!(e, ReadError::LineTooLong { line: 1, .. }), "{e}");
        // Records without a header.
        let e = ids
            .add_object(&gz(&[pod(
                "10.0.3.7",
                "a",
                "u",
                "2026-11-27T14:00:00Z",
                None,
            )]))
            .unwrap_err();
        assert!(matches!(e, ReadError::NoHeader), "{e}");
        assert!(ids.add_object(b"not gzip").is_err());
        assert!(ids.is_empty() && ids.intervals.is_empty());
    }

    #[test]
    fn a_segment_fed_a_byte_at_a_time_reads_as_fed_whole() {
        let bytes = gz(&[
            header("n1", "2026-11-27T14:02:00Z", "2026-11-27T14:04:00Z", false),
            pod("10.0.3.7", "api-a-1", "ua", "2026-11-27T14:00:00Z", None),
            pod("fd00::7", "api-b-1", "ub", "2026-11-27T14:00:00Z", None),
        ]);
        let mut reader = SegmentReader::new();
        for b in &bytes {
            reader.feed(std::slice::from_ref(b)).unwrap();
        }
        let segment = reader.finish().unwrap();
        assert_eq!(segment.header.node, "n1");
        assert_eq!(segment.lines.len(), 2);
        let mut ids = Identities::new();
        ids.add(segment);
        assert_eq!(
            ids.resolve(
                "fd00::7".parse().unwrap(),
                at("2026-11-27T14:02:10Z"),
                at("2026-11-27T14:02:20Z")
            )
            .to_string(),
            "payments/api-b-1"
        );
    }

    #[test]
    fn past_the_cap_intervals_are_counted_not_kept() {
        let mut ids = Identities::new();
        let mut lines = vec![header(
            "n1",
            "2026-11-27T14:00:00Z",
            "2026-11-27T14:01:00Z",
            false,
        )];
        for i in 0..(MAX_INTERVALS + 10) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i as u32));
            lines.push(pod(
                &ip.to_string(),
                "p",
                &i.to_string(),
                "2026-11-27T14:00:00Z",
                None,
            ));
        }
        ids.add(ReadSegment {
            header: match lines.remove(0) {
                JournalLine::Segment(h) => h,
                _ => unreachable!(),
            },
            lines,
        });
        assert_eq!(ids.intervals.len(), MAX_INTERVALS);
        assert_eq!(ids.dropped(), 10);
    }

    #[test]
    fn json_flows_gain_the_owner_of_each_end() {
        let ids = reused();
        let mut v = serde_json::json!({"flows": [{
            "src": "10.0.3.7", "dst": "10.9.9.9",
            "first": "2026-11-27T14:02:10Z", "last": "2026-11-27T14:02:20Z"
        }]});
        name_flows_json(&mut v, "flows", &ids);
        assert_eq!(v["flows"][0]["src_owner"]["resolution"], "known");
        assert_eq!(v["flows"][0]["src_owner"]["owner"]["name"], "api-a-1");
        assert_eq!(v["flows"][0]["dst_owner"]["resolution"], "unknown");
    }
}
