//! `captures explain FILE…` or a bucket selection: the symptoms in
//! captures, worst first.
//!
//! Each capture is streamed once through [`spool::pcap::PcapCheck`] into a
//! [`flows::FlowTable`] ([`Explainer::file`] takes its bytes in chunks, from
//! a local file or from a download being hashed). The table holds a bounded
//! number of live flows (it hands the least recent out early, as partial
//! records, which a [`PartialMerger`] joins again within its own bound);
//! totals are summed as records go by, and only the
//! [`MAX_REPORTED_FLOWS`] worst flows, the handshake and DNS answer times
//! (fixed-size histograms) and the open DNS error runs are kept. So memory
//! has a ceiling whatever the number of flows or the file size.

use hdrhistogram::Histogram;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use flows::schema::SLOW_DNS_MS;
use flows::{DnsAnswer, FlowRecord, FlowTable, PartialMerger};
use serde::Serialize;
use spool::pcap::{DamageKind, PcapCheck};

use crate::archive::FlowFilter;
use crate::untrusted::{self, escaped};
use crate::window::Window;

const BUFFER: usize = 1 << 20;
/// A burst of DNS errors: at least this many answers with one RCODE from
/// one server…
pub const DNS_BURST_MIN: u64 = 5;
/// …each within this long of the one before.
pub const DNS_BURST_GAP: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{name} is not a pcap file ({detail}); give a file written by tcpdump -w (pcapng is not read)"
    )]
    NotPcap { name: String, detail: String },
}

/// What one file held.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file's path, or the capture's object key.
    pub path: String,
    pub packets: u64,
    pub link_type: Option<u32>,
    /// Records without an IP packet (ARP, an unsupported link type).
    pub not_ip: u64,
    pub flows: u64,
    /// Where reading stopped and why, for a damaged or torn file.
    pub damage: Option<String>,
}

/// Percentiles of a set of durations, in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// DNS answer times (query to answer) over every answered query.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DnsTimes {
    #[serde(flatten)]
    pub times: Percentiles,
    /// Answers later than `slow_ms`.
    pub slow: u64,
    pub slow_ms: u64,
}

/// A run of NXDOMAIN or SERVFAIL answers from one server: at least
/// [`DNS_BURST_MIN`], each within [`DNS_BURST_GAP`] of the one before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsBurst {
    pub server: IpAddr,
    /// `NXDOMAIN` or `SERVFAIL`.
    pub rcode: &'static str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub answers: u64,
    /// Distinct clients that got them (up to [`MAX_BURST_CLIENTS`] named).
    pub clients: Vec<IpAddr>,
}

/// Clients named per burst.
pub const MAX_BURST_CLIENTS: usize = 8;

/// Flows with a symptom a report lists, worst first: more than a person
/// reads, and a bound on memory when every flow has one (a port scan).
/// The totals count every flow.
pub const MAX_REPORTED_FLOWS: usize = 10_000;

/// Totals of each symptom over all files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub resets: u64,
    pub resets_in_handshake: u64,
    pub syn_unanswered: u64,
    pub retransmissions: u64,
    pub dup_acks: u64,
    pub zero_windows: u64,
    pub dns_unanswered: u64,
    pub dns_nxdomain: u64,
    pub dns_servfail: u64,
    pub dns_slow: u64,
    pub icmp_unreachable: u64,
    pub icmp_frag_needed: u64,
}

impl Totals {
    /// Adds one flow's counts (saturating: a count from a hostile capture
    /// never wraps into a small one).
    fn add(&mut self, f: &FlowRecord) {
        for (total, count) in [
            (&mut self.resets, f.resets_src.saturating_add(f.resets_dst)),
            (&mut self.resets_in_handshake, f.resets_in_handshake),
            (&mut self.syn_unanswered, f.syn_unanswered),
            (&mut self.retransmissions, f.retransmissions),
            (&mut self.dup_acks, f.dup_acks),
            (&mut self.zero_windows, f.zero_windows),
            (&mut self.dns_unanswered, f.dns_unanswered),
            (&mut self.dns_nxdomain, f.dns_nxdomain),
            (&mut self.dns_servfail, f.dns_servfail),
            (&mut self.dns_slow, f.dns_slow),
            (&mut self.icmp_unreachable, f.icmp_unreachable),
            (&mut self.icmp_frag_needed, f.icmp_frag_needed),
        ] {
            *total = total.saturating_add(count);
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub files: Vec<FileReport>,
    pub totals: Totals,
    /// Connection set-up times (SYN to SYN/ACK).
    pub handshakes: Option<Percentiles>,
    pub dns_answers: Option<DnsTimes>,
    /// NXDOMAIN and SERVFAIL bursts, in time order.
    pub dns_error_bursts: Vec<DnsBurst>,
    /// Flows with at least one symptom, worst first (at most
    /// [`MAX_REPORTED_FLOWS`]).
    pub flows: Vec<FlowRecord>,
    /// Flows with a symptom beyond those listed (counted in the totals).
    pub flows_not_listed: u64,
}

/// Which flows a report is about: all, or those of a bucket selection
/// (a time window, `--host`, `--port`).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub window: Option<Window>,
    pub filter: FlowFilter,
}

impl Scope {
    fn flow(&self, f: &FlowRecord) -> bool {
        self.window.is_none_or(|w| w.overlaps(f.first, f.last)) && self.filter.matches(f)
    }

    fn dns_answer(&self, a: &DnsAnswer) -> bool {
        let at = flows::table::time(a.at);
        self.window.is_none_or(|w| w.contains(at))
            && (self.filter.matches_address(a.server, at)
                || self.filter.matches_address(a.client, at))
            && self.filter.port.is_none_or(|p| p == 53)
            && self.filter.symptom.is_none_or(|s| s == flows::Symptom::Dns)
    }
}

/// An open run of one DNS error from one server.
#[derive(Debug)]
struct Run {
    from: Duration,
    to: Duration,
    answers: u64,
    clients: Vec<IpAddr>,
}

/// A flow with a symptom, ordered by how it ranks in the report (the worst
/// is the greatest).
#[derive(Debug)]
struct Ranked(FlowRecord);

impl Ranked {
    fn rank(&self) -> (u64, Reverse<Option<DateTime<Utc>>>) {
        (self.0.severity(), Reverse(self.0.first_symptom))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.rank() == other.rank()
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// Reads captures one after the other and collects what the report needs.
#[derive(Debug, Default)]
pub struct Explainer {
    scope: Scope,
    /// The flow table's cap, when not the default.
    max_live_flows: Option<usize>,
    files: Vec<FileReport>,
    totals: Totals,
    /// The worst flows so far, the least bad on top (to leave first).
    worst: BinaryHeap<Reverse<Ranked>>,
    flows_not_listed: u64,
    handshakes: Times,
    dns_times: Times,
    /// DNS answers slower than `SLOW_DNS_MS`, counted exactly.
    dns_slow: u64,
    dns_runs: HashMap<(IpAddr, u8), Run>,
    bursts: Vec<DnsBurst>,
}

impl Explainer {
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            ..Self::default()
        }
    }

    /// Holds at most `max_live` live flows per capture instead of
    /// [`flows::table::MAX_LIVE_FLOWS`].
    pub fn max_live_flows(mut self, max_live: usize) -> Self {
        self.max_live_flows = Some(max_live);
        self
    }

    /// Starts reading one capture, named `name` in the report.
    pub fn file(&mut self, name: impl Into<String>) -> FileExplainer<'_> {
        let name = name.into();
        let mut table = FlowTable::new(name.clone()).collect_dns_answers();
        if let Some(max_live) = self.max_live_flows {
            table = table.max_live(max_live);
        }
        FileExplainer {
            table,
            merger: PartialMerger::default(),
            check: PcapCheck::new(),
            name,
            explainer: self,
        }
    }

    /// Reads a local file.
    pub fn read_path(&mut self, path: &Path) -> Result<(), ExplainError> {
        let read_error = |source| ExplainError::Read {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(read_error)?;
        let mut reading = self.file(path.display().to_string());
        let mut buffer = vec![0u8; BUFFER];
        loop {
            let n = match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            };
            if !reading.feed(&buffer[..n]) {
                break;
            }
        }
        reading.finish()
    }

    fn keep(&mut self, record: FlowRecord) {
        if !self.scope.flow(&record) {
            return;
        }
        if let Some(us) = record.handshake_us {
            self.handshakes.record(us);
        }
        if record.severity() == 0 {
            return;
        }
        self.totals.add(&record);
        self.worst.push(Reverse(Ranked(record)));
        if self.worst.len() > MAX_REPORTED_FLOWS {
            self.worst.pop();
            self.flows_not_listed += 1;
        }
    }

    fn dns_answer(&mut self, answer: &DnsAnswer) {
        if !self.scope.dns_answer(answer) {
            return;
        }
        if let Some(took) = answer.took {
            let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            self.dns_times.record(us);
            if us > SLOW_DNS_MS * 1000 {
                self.dns_slow += 1;
            }
        }
        if !matches!(answer.rcode, 2 | 3) {
            return;
        }
        let key = (answer.server, answer.rcode);
        let continues = self
            .dns_runs
            .get(&key)
            .is_some_and(|run| answer.at.saturating_sub(run.to) <= DNS_BURST_GAP);
        if !continues && let Some(run) = self.dns_runs.remove(&key) {
            self.close_run(key, run);
        }
        let run = self.dns_runs.entry(key).or_insert(Run {
            from: answer.at,
            to: answer.at,
            answers: 0,
            clients: Vec::new(),
        });
        run.to = run.to.max(answer.at);
        run.answers += 1;
        if run.clients.len() < MAX_BURST_CLIENTS && !run.clients.contains(&answer.client) {
            run.clients.push(answer.client);
        }
    }

    fn close_run(&mut self, (server, rcode): (IpAddr, u8), run: Run) {
        if run.answers >= DNS_BURST_MIN {
            self.bursts.push(DnsBurst {
                server,
                rcode: if rcode == 2 { "SERVFAIL" } else { "NXDOMAIN" },
                from: flows::table::time(run.from),
                to: flows::table::time(run.to),
                answers: run.answers,
                clients: run.clients,
            });
        }
    }

    /// The report over every capture read.
    pub fn finish(mut self) -> Report {
        let runs: Vec<_> = self.dns_runs.drain().collect();
        for (key, run) in runs {
            self.close_run(key, run);
        }
        self.bursts.sort_by_key(|b| (b.from, b.server));
        let mut failing: Vec<FlowRecord> = self.worst.into_iter().map(|r| r.0.0).collect();
        failing.sort_by(|a, b| {
            b.severity()
                .cmp(&a.severity())
                .then(a.first_symptom.cmp(&b.first_symptom))
        });
        let slow = self.dns_slow;
        Report {
            files: self.files,
            totals: self.totals,
            handshakes: self.handshakes.percentiles(),
            dns_answers: self.dns_times.percentiles().map(|times| DnsTimes {
                times,
                slow,
                slow_ms: SLOW_DNS_MS,
            }),
            dns_error_bursts: self.bursts,
            flows: failing,
            flows_not_listed: self.flows_not_listed,
        }
    }
}

/// One capture being read: feed it the capture's bytes in order.
#[derive(Debug)]
pub struct FileExplainer<'a> {
    explainer: &'a mut Explainer,
    name: String,
    check: PcapCheck,
    table: FlowTable,
    merger: PartialMerger,
}

impl FileExplainer<'_> {
    /// Reads the next bytes; false once the capture is damaged (what
    /// follows cannot be read).
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        let table = &mut self.table;
        self.check.feed_with(chunk, |record| table.add(record));
        self.drain();
        !self.check.is_damaged()
    }

    fn drain(&mut self) {
        let explainer = &mut *self.explainer;
        for record in self.table.drain() {
            self.merger.push(record, &mut |whole| explainer.keep(whole));
        }
        let answers: Vec<DnsAnswer> = self.table.drain_dns_answers().collect();
        for answer in &answers {
            self.explainer.dns_answer(answer);
        }
    }

    /// Ends the capture: a file that is not a pcap is an error; a damaged
    /// one is reported up to where it stops.
    pub fn finish(mut self) -> Result<(), ExplainError> {
        self.drain();
        let summary = self.check.finish();
        if let Some(damage) = &summary.damage
            && matches!(damage.kind, DamageKind::NotPcap | DamageKind::NoHeader)
        {
            return Err(ExplainError::NotPcap {
                name: self.name,
                detail: damage.to_string(),
            });
        }
        let explainer = &mut *self.explainer;
        let merger = &mut self.merger;
        let stats = self
            .table
            .finish_each(|record| merger.push(record, &mut |whole| explainer.keep(whole)));
        let merged =
            std::mem::take(&mut self.merger).finish(&mut |whole| self.explainer.keep(whole));
        self.explainer.files.push(FileReport {
            path: self.name,
            packets: summary.packets,
            link_type: summary.link_type,
            not_ip: stats.not_ip,
            // A flow handed out in segments counts once.
            flows: stats.flows.saturating_sub(merged),
            damage: summary.damage.map(|d| {
                format!(
                    "read {} whole packets ({} bytes), then stopped: {d}",
                    summary.packets, summary.whole_bytes
                )
            }),
        });
        Ok(())
    }
}

/// Reads local `paths` and reports their symptoms.
pub fn explain(paths: &[PathBuf]) -> Result<Report, ExplainError> {
    let mut explainer = Explainer::new(Scope::default());
    for path in paths {
        explainer.read_path(path)?;
    }
    Ok(explainer.finish())
}

/// Durations in µs for percentiles, in fixed memory whatever their number
/// (an HDR histogram, 3 significant digits): memory follows the live flows,
/// not how many connections or DNS answers a capture holds.
#[derive(Debug, Default)]
struct Times(Option<Histogram<u64>>);

impl Times {
    fn record(&mut self, us: u64) {
        if self.0.is_none() {
            self.0 = Histogram::new(3).ok();
        }
        if let Some(histogram) = self.0.as_mut() {
            // It grows to the range recorded; past its limit, the largest.
            if histogram.record(us).is_err() {
                histogram.saturating_record(us);
            }
        }
    }

    fn percentiles(&self) -> Option<Percentiles> {
        let h = self.0.as_ref().filter(|h| !h.is_empty())?;
        Some(Percentiles {
            count: usize::try_from(h.len()).unwrap_or(usize::MAX),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        })
    }
}

/// What went wrong in one flow, in words, each with its count.
pub fn describe(f: &FlowRecord) -> Vec<String> {
    let mut out = Vec::new();
    let mut say = |n: u64, what: String| {
        if n > 0 {
            out.push(format!("{what} ×{}", untrusted::count(n)));
        }
    };
    say(
        f.syn_unanswered,
        format!("connection attempt never answered by {}", f.dst),
    );
    if f.resets_in_handshake > 0 {
        say(
            f.resets_in_handshake,
            "refused: reset during the handshake".to_owned(),
        );
    }
    let later = f
        .count(flows::Symptom::Reset)
        .saturating_sub(f.resets_in_handshake);
    if later > 0 {
        say(f.resets_src, format!("reset sent by {} (opener)", f.src));
        say(f.resets_dst, format!("reset sent by {} (peer)", f.dst));
    }
    say(
        f.icmp_unreachable,
        "ICMP destination unreachable".to_owned(),
    );
    say(
        f.icmp_frag_needed,
        "ICMP fragmentation needed / packet too big".to_owned(),
    );
    say(f.dns_unanswered, "DNS query never answered".to_owned());
    say(f.dns_servfail, "DNS SERVFAIL".to_owned());
    say(f.dns_nxdomain, "DNS NXDOMAIN".to_owned());
    say(
        f.dns_slow,
        format!("slow DNS answer (over {SLOW_DNS_MS} ms)"),
    );
    say(f.zero_windows, "zero window".to_owned());
    say(f.retransmissions, "retransmission".to_owned());
    say(f.dup_acks, "duplicate ACK".to_owned());
    out
}

fn endpoint(addr: std::net::IpAddr, port: u16) -> String {
    match addr {
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
        std::net::IpAddr::V4(a) => format!("{a}:{port}"),
    }
}

/// The report as text for a person.
pub fn render_text(report: &Report) -> String {
    render_text_named(report, &|_, _, _| None)
}

/// Who held an address during a time, as [`render_text_named`] prints it
/// after the address (already escaped), or `None` to print none.
pub type Namer<'a> = dyn Fn(std::net::IpAddr, DateTime<Utc>, DateTime<Utc>) -> Option<String> + 'a;

/// The report as text, each flow's addresses followed by `name`'s answer
/// for the flow's time: `10.0.3.7:8080 (payments/api-5f7c-xk2p9)`.
pub fn render_text_named(report: &Report, name: &Namer<'_>) -> String {
    use std::fmt::Write as _;
    let named = |ip, port, f: &FlowRecord| match name(ip, f.first, f.last) {
        Some(n) => format!("{} ({n})", endpoint(ip, port)),
        None => endpoint(ip, port),
    };
    let mut s = String::new();
    for f in &report.files {
        let _ = writeln!(
            s,
            "{}: {} packets, {} flows, link type {}{}",
            escaped(&f.path),
            f.packets,
            f.flows,
            f.link_type.map_or("?".to_owned(), |l| l.to_string()),
            if f.not_ip > 0 {
                format!(", {} packets not IP", f.not_ip)
            } else {
                String::new()
            }
        );
        if let Some(damage) = &f.damage {
            let _ = writeln!(s, "  damaged: {damage}");
        }
    }
    if report.flows.is_empty() {
        let _ = writeln!(s, "\nno symptoms found");
    } else {
        let _ = writeln!(s, "\nsymptoms, worst first (time of the first one):");
        for f in &report.flows {
            let at = f
                .first_symptom
                .unwrap_or(f.first)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            let _ = writeln!(
                s,
                "  {at}  {} {} -> {}  {}",
                escaped(&f.proto),
                named(f.src, f.sport, f),
                named(f.dst, f.dport, f),
                escaped(&describe(f).join(", "))
            );
        }
        if report.flows_not_listed > 0 {
            let _ = writeln!(
                s,
                "  … and {} more flows with symptoms (counted in the totals)",
                report.flows_not_listed
            );
        }
    }
    if !report.dns_error_bursts.is_empty() {
        let _ = writeln!(
            s,
            "\nDNS error bursts ({DNS_BURST_MIN} or more answers, each within {} ms of the last):",
            DNS_BURST_GAP.as_millis()
        );
        for b in &report.dns_error_bursts {
            let clients: Vec<String> = b.clients.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                s,
                "  {} .. {}  {} ×{} from {} to {}",
                b.from.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                b.to.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                b.rcode,
                b.answers,
                b.server,
                clients.join(", ")
            );
        }
    }
    let t = &report.totals;
    let _ = writeln!(
        s,
        "\ntotals: {} resets ({} in the handshake), {} unanswered SYNs, {} retransmissions, {} duplicate ACKs, {} zero windows, {} unanswered DNS queries, {} NXDOMAIN, {} SERVFAIL, {} slow DNS answers, {} ICMP unreachable, {} fragmentation needed",
        untrusted::count(t.resets),
        untrusted::count(t.resets_in_handshake),
        untrusted::count(t.syn_unanswered),
        untrusted::count(t.retransmissions),
        untrusted::count(t.dup_acks),
        untrusted::count(t.zero_windows),
        untrusted::count(t.dns_unanswered),
        untrusted::count(t.dns_nxdomain),
        untrusted::count(t.dns_servfail),
        untrusted::count(t.dns_slow),
        untrusted::count(t.icmp_unreachable),
        untrusted::count(t.icmp_frag_needed)
    );
    let ms = |us: u64| us as f64 / 1000.0;
    if let Some(h) = report.handshakes {
        let _ = writeln!(
            s,
            "handshakes: {} connections, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            h.count,
            ms(h.p50_us),
            ms(h.p90_us),
            ms(h.p99_us),
            ms(h.max_us)
        );
    }
    if let Some(d) = report.dns_answers {
        let _ = writeln!(
            s,
            "DNS answers: {} answered, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {} over {} ms",
            d.times.count,
            ms(d.times.p50_us),
            ms(d.times.p90_us),
            ms(d.times.p99_us),
            ms(d.times.max_us),
            d.slow,
            d.slow_ms
        );
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn percentiles_of_a_million_handshakes_are_within_a_thousandth_in_fixed_memory() {
        let mut times = Times::default();
        for us in 1..=1_000_000u64 {
            times.record(us);
        }
        let p = times.percentiles().unwrap();
        assert_eq!(p.count, 1_000_000);
        for (got, want) in [
            (p.p50_us, 500_000),
            (p.p90_us, 900_000),
            (p.p99_us, 990_000),
        ] {
            assert!(got.abs_diff(want) <= want / 1000, "{got} vs {want}");
        }
        assert!(
            p.max_us >= 1_000_000 && p.max_us <= 1_001_000,
            "{}",
            p.max_us
        );
        // The histogram's size depends on the range recorded, not the count.
        let mut more = Times::default();
        for us in (1..=1_000_000u64).cycle().take(3_000_000) {
            more.record(us);
        }
        assert_eq!(
            more.0.as_ref().unwrap().distinct_values(),
            times.0.as_ref().unwrap().distinct_values()
        );
        assert!(Times::default().percentiles().is_none());
    }
}
