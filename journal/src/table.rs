//! The journal's state: which pod or service holds which address since
//! when, the intervals that ended since the current segment began, and
//! whether the journal knows the API server's current state. Pure: every
//! change takes the time it happened, so tests drive it with any clock.
//!
//! Memory is bounded by what is live (the node's pods, the cluster's
//! Services) plus the intervals closed in the current segment, which the
//! caller writes out early once there are [`Table::needs_cut`] of them:
//! an ended interval is written, never dropped.

use std::collections::{BTreeMap, HashMap, HashSet};

use bucket::journal_record::{
    JOURNAL_SCHEMA, JournalLine, PodInterval, SegmentHeader, ServiceInterval,
};
use chrono::{DateTime, Utc};

use crate::facts::{PodFacts, ServiceFacts};

/// The two watches the journal keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Pods,
    Services,
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pods => "pods",
            Self::Services => "services",
        })
    }
}

/// One change, as kube-runtime's watcher reports it (`Init … InitDone` is
/// a full list, after start, a `410 Gone` or a reconnection).
#[derive(Debug, Clone)]
pub enum Change {
    PodApplied(PodFacts),
    PodDeleted(PodFacts),
    ServiceApplied(ServiceFacts),
    ServiceDeleted(ServiceFacts),
    /// A full list of `Stream` begins.
    ListStarted(Stream),
    /// The full list of `Stream` is complete: what it did not name is gone.
    ListDone(Stream),
    /// The watch of `Stream` failed; it reconnects with backoff.
    Lost {
        stream: Stream,
        reason: String,
    },
}

/// What one segment holds, ready to write.
#[derive(Debug, Clone)]
pub struct Segment {
    pub header: SegmentHeader,
    pub lines: Vec<JournalLine>,
}

/// Whether one watch is known to be current.
#[derive(Debug, Clone, Default)]
struct WatchState {
    /// `None` while current; otherwise since when not.
    lost_since: Option<DateTime<Utc>>,
    reason: Option<String>,
    /// A full list in progress: the keys it named so far.
    listing: Option<HashSet<String>>,
}

#[derive(Debug)]
pub struct Table {
    node: String,
    written_by: String,
    /// Open pod intervals by pod uid, then address.
    pods: HashMap<String, BTreeMap<String, PodInterval>>,
    /// Open Service intervals by Service uid, then address.
    services: HashMap<String, BTreeMap<String, ServiceInterval>>,
    /// Intervals that ended since `segment_start`.
    closed: Vec<JournalLine>,
    max_closed: usize,
    segment_start: DateTime<Utc>,
    /// Whether some watch was not current at some time in this segment.
    stale_in_segment: bool,
    watches: HashMap<Stream, WatchState>,
}

impl Table {
    /// A table for `node` whose first segment starts at `start`. Until
    /// each watch has listed once, the journal is stale.
    pub fn new(node: &str, start: DateTime<Utc>, max_closed: usize) -> Self {
        let not_listed = || WatchState {
            lost_since: Some(start),
            reason: Some("not listed yet".to_owned()),
            listing: None,
        };
        Self {
            node: node.to_owned(),
            written_by: format!("journal {}", env!("CARGO_PKG_VERSION")),
            pods: HashMap::new(),
            services: HashMap::new(),
            closed: Vec::new(),
            max_closed: max_closed.max(1),
            segment_start: start,
            stale_in_segment: true,
            watches: HashMap::from([
                (Stream::Pods, not_listed()),
                (Stream::Services, not_listed()),
            ]),
        }
    }

    /// Applies one change that happened at `now`.
    pub fn apply(&mut self, change: Change, now: DateTime<Utc>) {
        match change {
            Change::PodApplied(pod) => {
                self.seen(Stream::Pods, &pod.uid);
                self.apply_pod(pod, now);
            }
            Change::PodDeleted(pod) => self.close_pod(&pod.uid, now),
            Change::ServiceApplied(service) => {
                self.seen(Stream::Services, &service.uid);
                self.apply_service(service, now);
            }
            Change::ServiceDeleted(service) => self.close_service(&service.uid, now),
            Change::ListStarted(stream) => {
                self.watch(stream).listing = Some(HashSet::new());
            }
            Change::ListDone(stream) => self.list_done(stream, now),
            Change::Lost { stream, reason } => {
                let watch = self.watch(stream);
                watch.lost_since.get_or_insert(now);
                watch.reason = Some(reason);
                watch.listing = None;
                self.stale_in_segment = true;
            }
        }
    }

    /// Whether enough intervals ended in this segment that it should be
    /// written now rather than at the end of its period.
    pub fn needs_cut(&self) -> bool {
        self.closed.len() >= self.max_closed
    }

    /// Ends the current segment at `end` and starts the next there: the
    /// intervals that ended in it, then those still open (with no
    /// `valid_to`), services after pods, each sorted by address.
    pub fn cut(&mut self, end: DateTime<Utc>) -> Segment {
        // A segment never ends before it starts, and is never empty in
        // time: segments are named by their start, which must not repeat
        // (an early cut just before a period boundary, a slow loop).
        let end = end.max(self.segment_start + chrono::TimeDelta::milliseconds(1));
        let lost = self
            .watches
            .values()
            .filter_map(|w| w.lost_since.map(|since| (since, w.reason.clone())))
            .min_by_key(|(since, _)| *since);
        let header = SegmentHeader {
            schema: JOURNAL_SCHEMA,
            node: self.node.clone(),
            from: self.segment_start,
            to: end,
            stale: self.stale_in_segment || lost.is_some(),
            stale_since: lost.as_ref().map(|(since, _)| *since),
            stale_reason: lost.and_then(|(_, reason)| reason),
            written_by: self.written_by.clone(),
        };
        let mut lines = std::mem::take(&mut self.closed);
        let mut open_pods: Vec<&PodInterval> =
            self.pods.values().flat_map(|m| m.values()).collect();
        open_pods.sort_by(|a, b| (&a.ip, &a.uid).cmp(&(&b.ip, &b.uid)));
        lines.extend(open_pods.into_iter().cloned().map(JournalLine::Pod));
        let mut open_services: Vec<&ServiceInterval> =
            self.services.values().flat_map(|m| m.values()).collect();
        open_services.sort_by(|a, b| (&a.ip, &a.uid).cmp(&(&b.ip, &b.uid)));
        lines.extend(open_services.into_iter().cloned().map(JournalLine::Service));
        self.segment_start = end;
        self.stale_in_segment = self.watches.values().any(|w| w.lost_since.is_some());
        Segment { header, lines }
    }

    /// Addresses held now (pods and Services), for tests and logs.
    pub fn open_intervals(&self) -> usize {
        self.pods.values().map(BTreeMap::len).sum::<usize>()
            + self.services.values().map(BTreeMap::len).sum::<usize>()
    }

    /// Intervals that ended and wait to be written.
    pub fn closed_intervals(&self) -> usize {
        self.closed.len()
    }

    /// Whether every watch is current now.
    pub fn is_current(&self) -> bool {
        self.watches.values().all(|w| w.lost_since.is_none())
    }

    fn watch(&mut self, stream: Stream) -> &mut WatchState {
        self.watches.entry(stream).or_default()
    }

    fn seen(&mut self, stream: Stream, uid: &str) {
        if let Some(listing) = &mut self.watch(stream).listing {
            listing.insert(uid.to_owned());
        }
    }

    /// A full list is complete: whatever it did not name was deleted while
    /// the journal was not watching (the time is the list's, the real one
    /// unknown; the segment says stale).
    fn list_done(&mut self, stream: Stream, now: DateTime<Utc>) {
        let watch = self.watch(stream);
        let listed = watch.listing.take().unwrap_or_default();
        watch.lost_since = None;
        watch.reason = None;
        let unlisted = |uid: &&String| !listed.contains(uid.as_str());
        let gone: Vec<String> = match stream {
            Stream::Pods => self.pods.keys().filter(unlisted).cloned().collect(),
            Stream::Services => self.services.keys().filter(unlisted).cloned().collect(),
        };
        for uid in gone {
            match stream {
                Stream::Pods => self.close_pod(&uid, now),
                Stream::Services => self.close_service(&uid, now),
            }
        }
    }

    fn apply_pod(&mut self, pod: PodFacts, now: DateTime<Utc>) {
        let held = self.pods.remove(&pod.uid).unwrap_or_default();
        let mut kept = BTreeMap::new();
        for (ip, mut interval) in held {
            if pod.ips.contains(&ip) {
                // Labels can change while the address stays.
                interval.labels.clone_from(&pod.labels);
                kept.insert(ip, interval);
            } else {
                interval.valid_to = Some(now);
                self.closed.push(JournalLine::Pod(interval));
            }
        }
        for ip in &pod.ips {
            kept.entry(ip.clone()).or_insert_with(|| PodInterval {
                ip: ip.clone(),
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                owner: pod.owner.clone(),
                workload: pod.workload.clone(),
                labels: pod.labels.clone(),
                host_network: pod.host_network,
                node: pod.node.clone(),
                valid_from: now,
                valid_to: None,
            });
        }
        if !kept.is_empty() {
            self.pods.insert(pod.uid, kept);
        }
    }

    fn close_pod(&mut self, uid: &str, now: DateTime<Utc>) {
        for (_, mut interval) in self.pods.remove(uid).unwrap_or_default() {
            interval.valid_to = Some(now);
            self.closed.push(JournalLine::Pod(interval));
        }
    }

    fn apply_service(&mut self, service: ServiceFacts, now: DateTime<Utc>) {
        let held = self.services.remove(&service.uid).unwrap_or_default();
        let mut kept = BTreeMap::new();
        for (ip, mut interval) in held {
            if service.ips.contains(&ip) {
                kept.insert(ip, interval);
            } else {
                interval.valid_to = Some(now);
                self.closed.push(JournalLine::Service(interval));
            }
        }
        for ip in &service.ips {
            kept.entry(ip.clone()).or_insert_with(|| ServiceInterval {
                ip: ip.clone(),
                namespace: service.namespace.clone(),
                name: service.name.clone(),
                uid: service.uid.clone(),
                valid_from: now,
                valid_to: None,
            });
        }
        if !kept.is_empty() {
            self.services.insert(service.uid, kept);
        }
    }

    fn close_service(&mut self, uid: &str, now: DateTime<Utc>) {
        for (_, mut interval) in self.services.remove(uid).unwrap_or_default() {
            interval.valid_to = Some(now);
            self.closed.push(JournalLine::Service(interval));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeDelta;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000 + seconds, 0).unwrap()
    }

    fn pod(uid: &str, name: &str, ips: &[&str]) -> PodFacts {
        PodFacts {
            uid: uid.into(),
            namespace: "payments".into(),
            name: name.into(),
            ips: ips.iter().map(|s| (*s).to_owned()).collect(),
            owner: None,
            workload: None,
            labels: BTreeMap::new(),
            host_network: false,
            node: "n1".into(),
        }
    }

    /// Both watches list (nothing) at `now`, and the segment that was
    /// stale until then is written.
    fn listed(table: &mut Table, now: DateTime<Utc>) {
        for stream in [Stream::Pods, Stream::Services] {
            table.apply(Change::ListStarted(stream), now);
            table.apply(Change::ListDone(stream), now);
        }
        assert!(table.is_current());
        table.cut(now);
    }

    fn pods_of(segment: &Segment) -> Vec<&PodInterval> {
        segment
            .lines
            .iter()
            .filter_map(|l| match l {
                JournalLine::Pod(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_address_reused_30_s_after_a_deletion_gives_two_intervals_that_do_not_overlap() {
        let mut table = Table::new("n1", t(0), 100);
        listed(&mut table, t(0));
        table.apply(Change::PodApplied(pod("a", "api-1", &["10.0.3.7"])), t(1));
        table.apply(Change::PodDeleted(pod("a", "api-1", &["10.0.3.7"])), t(20));
        table.apply(Change::PodApplied(pod("b", "web-1", &["10.0.3.7"])), t(50));
        let segment = table.cut(t(60));
        let held = pods_of(&segment);
        assert_eq!(held.len(), 2);
        let (first, second) = (held[0], held[1]);
        assert_eq!(
            (first.name.as_str(), first.valid_from, first.valid_to),
            ("api-1", t(1), Some(t(20)))
        );
        assert_eq!(
            (second.name.as_str(), second.valid_from, second.valid_to),
            ("web-1", t(50), None)
        );
        assert!(first.valid_to.unwrap() <= second.valid_from);
        assert!(!segment.header.stale);
    }

    #[test]
    fn an_open_interval_is_written_again_in_the_next_segment_with_its_first_time() {
        let mut table = Table::new("n1", t(0), 100);
        listed(&mut table, t(0));
        table.apply(
            Change::PodApplied(pod("a", "api-1", &["10.0.3.7", "fd00::7"])),
            t(1),
        );
        let first = table.cut(t(60));
        let second = table.cut(t(120));
        assert_eq!(pods_of(&first).len(), 2);
        assert_eq!(pods_of(&second).len(), 2);
        assert!(pods_of(&second).iter().all(|p| p.valid_from == t(1)));
        assert_eq!((second.header.from, second.header.to), (t(60), t(120)));
    }

    #[test]
    fn a_lost_watch_marks_segments_stale_until_a_full_list_and_the_list_closes_what_went_meanwhile()
    {
        let mut table = Table::new("n1", t(0), 100);
        let before_listing = table.cut(t(1));
        assert!(before_listing.header.stale, "nothing listed yet");
        assert_eq!(
            before_listing.header.stale_reason.as_deref(),
            Some("not listed yet")
        );
        listed(&mut table, t(1));
        table.apply(Change::PodApplied(pod("a", "api-1", &["10.0.3.7"])), t(2));
        table.apply(Change::PodApplied(pod("b", "db-1", &["10.0.3.8"])), t(2));
        assert!(!table.cut(t(10)).header.stale);
        table.apply(
            Change::Lost {
                stream: Stream::Pods,
                reason: "connection refused".into(),
            },
            t(15),
        );
        let during = table.cut(t(60));
        assert!(during.header.stale);
        assert_eq!(during.header.stale_since, Some(t(15)));
        assert_eq!(
            during.header.stale_reason.as_deref(),
            Some("connection refused")
        );
        // The last state is kept while the API server is away.
        assert_eq!(pods_of(&during).len(), 2);
        // Back: the relist names only db-1, so api-1 went meanwhile.
        table.apply(Change::ListStarted(Stream::Pods), t(75));
        table.apply(Change::PodApplied(pod("b", "db-1", &["10.0.3.8"])), t(75));
        table.apply(Change::ListDone(Stream::Pods), t(75));
        let recovered = table.cut(t(120));
        assert!(recovered.header.stale, "stale for part of this segment");
        let ended: Vec<_> = pods_of(&recovered)
            .into_iter()
            .filter(|p| p.valid_to.is_some())
            .collect();
        assert_eq!(ended.len(), 1);
        assert_eq!(
            (ended[0].name.as_str(), ended[0].valid_to),
            ("api-1", Some(t(75)))
        );
        let next = table.cut(t(180));
        assert!(!next.header.stale);
        assert_eq!(next.header.stale_since, None);
    }

    #[test]
    fn an_address_change_ends_the_old_interval_and_starts_a_new_one() {
        let mut table = Table::new("n1", t(0), 100);
        listed(&mut table, t(0));
        table.apply(Change::PodApplied(pod("a", "api-1", &[])), t(1));
        assert_eq!(table.open_intervals(), 0, "a pending pod holds no address");
        table.apply(Change::PodApplied(pod("a", "api-1", &["10.0.3.7"])), t(2));
        table.apply(Change::PodApplied(pod("a", "api-1", &["10.0.3.9"])), t(5));
        let segment = table.cut(t(10));
        let held = pods_of(&segment);
        assert_eq!(held.len(), 2);
        assert_eq!(
            (held[0].ip.as_str(), held[0].valid_to),
            ("10.0.3.7", Some(t(5)))
        );
        assert_eq!(
            (held[1].ip.as_str(), held[1].valid_from),
            ("10.0.3.9", t(5))
        );
    }

    #[test]
    fn ended_intervals_ask_for_an_early_cut_at_the_cap() {
        let mut table = Table::new("n1", t(0), 10);
        listed(&mut table, t(0));
        let mut cuts = 0;
        let mut written = 0;
        for i in 0..100i64 {
            let p = pod(&format!("u{i}"), &format!("p{i}"), &["10.0.0.1"]);
            let now = t(0) + TimeDelta::milliseconds(i * 10);
            table.apply(Change::PodApplied(p.clone()), now);
            table.apply(Change::PodDeleted(p), now);
            assert!(table.closed_intervals() <= 10);
            if table.needs_cut() {
                written += pods_of(&table.cut(now)).len();
                cuts += 1;
            }
        }
        assert_eq!((cuts, written), (10, 100));
    }
}
