//! The flow index's schema: the one place that says it, imported by the
//! writer (this crate, the uploader) and the reader (the `captures` CLI).
//! Where its objects live is the bucket contract's (`bucket::index_keys`).
//!
//! An index object is gzip-compressed JSON lines, one [`FlowRecord`] per
//! line, one object per capture, at
//!
//! ```text
//! <static prefix of the key template>index/node=<node>/date=<YYYY-MM-DD>/hour=<HH>/<capture file>.jsonl.gz
//! ```
//!
//! The `name=value` folders are Hive partitions, so DuckDB and Athena read
//! the index in place and prune by node, date and hour:
//!
//! ```sql
//! SELECT * FROM read_json('s3://B/tcp-dumps/index/*/*/*/*.jsonl.gz', hive_partitioning = true)
//! WHERE date = '2026-11-27' AND (src = '10.0.1.7' OR dst = '10.0.1.7');
//! ```
//!
//! Fields, in the order they are written (all always present; `null` where
//! the type says `Option`):
//!
//! | field | type | meaning |
//! | --- | --- | --- |
//! | `capture` | string | object key of the capture that holds the flow |
//! | `proto` | string | `tcp`, `udp`, `icmp`, `icmpv6`, or the IP protocol number |
//! | `src`, `sport` | string, u16 | the side that opened the flow: the sender of its first packet, or of the SYN when a SYN/ACK came first (ports 0 without ports) |
//! | `dst`, `dport` | string, u16 | the other side |
//! | `first`, `last` | RFC 3339 UTC | first and last packet of the flow in this capture |
//! | `packets_src`, `bytes_src` | u64 | packets and wire bytes (frame length) sent by `src` |
//! | `packets_dst`, `bytes_dst` | u64 | the same for `dst` |
//! | `resets_src`, `resets_dst` | u64 | TCP RST segments sent by each side |
//! | `resets_in_handshake` | u64 | of those, sent before the handshake completed (a refused connection) |
//! | `syn_unanswered` | u64 | SYNs from `src` with neither SYN/ACK nor RST from `dst` by the end of the capture |
//! | `retransmissions` | u64 | TCP segments carrying data, SYN or FIN whose sequence space was already sent (keep-alives and zero-window probes excepted) |
//! | `dup_acks` | u64 | TCP duplicate ACKs: no data, the same ACK number and window as the sender's previous segment, not SYN/FIN/RST, not answering a keep-alive (Wireshark's `tcp.analysis.duplicate_ack`) |
//! | `zero_windows` | u64 | TCP segments advertising a zero window (not SYN, FIN or RST) |
//! | `dns_unanswered` | u64 | DNS queries (UDP port 53) whose id never got an answer in this capture |
//! | `dns_nxdomain`, `dns_servfail` | u64 | DNS answers with RCODE 3 and 2 |
//! | `dns_slow` | u64 | DNS answers that came more than [`SLOW_DNS_MS`] after their query |
//! | `icmp_unreachable` | u64 | ICMP/ICMPv6 destination unreachable that quote a packet of this flow |
//! | `icmp_frag_needed` | u64 | ICMP fragmentation needed / ICMPv6 packet too big quoting this flow |
//! | `handshake_us` | Option u64 | SYN to SYN/ACK, microseconds |
//! | `dns_slowest_us` | Option u64 | slowest DNS query to answer, microseconds |
//! | `first_symptom` | Option RFC 3339 | time of the first packet that counted as a symptom |
//! | `partial` | bool | the record is one segment of a flow handed out early because the flow table was full (schema 2) |
//!
//! Fields added after the first release (`dup_acks`, `dns_slow`) read as 0
//! from older index objects, and `partial` as `false`.
//!
//! A flow that spans captures has one record in each. Records are written
//! when a flow has been idle for [`IDLE_SECS`] of capture time or at the end
//! of the capture, so their order is not sorted.
//!
//! Schema versions ([`SCHEMA_VERSION`]): 1, the first release; 2 adds
//! `partial`. The flow table holds a bounded number of flows
//! ([`crate::table::MAX_LIVE_FLOWS`]); when a new flow finds it full, the
//! least recently seen flows are written as `partial: true` records and
//! forgotten, and a later packet of one of them starts a new record of the
//! same flow (possibly with `src` and `dst` the other way round). A flow's
//! segments are in the same object, each partial one before the record that
//! continues it; readers merge them ([`crate::merge`]). Counters add up
//! across segments, except that a SYN or DNS query whose answer came in a
//! later segment counts as unanswered in its own segment.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A flow with no packet for this long (capture time) is written out and
/// forgotten: memory is bounded by the flows live in that window.
pub const IDLE_SECS: u64 = 120;

/// A DNS answer later than this after its query counts as slow
/// (`dns_slow`): well above a cluster resolver's usual answer time (a few
/// milliseconds from cache, tens to a hundred or so when it recurses), well
/// below the 5 s after which a client's resolver retries.
pub const SLOW_DNS_MS: u64 = 200;

/// The index schema written by this version (see the module's notes).
pub const SCHEMA_VERSION: u32 = 2;

/// One flow of one capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    pub capture: String,
    pub proto: String,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub packets_src: u64,
    pub bytes_src: u64,
    pub packets_dst: u64,
    pub bytes_dst: u64,
    pub resets_src: u64,
    pub resets_dst: u64,
    pub resets_in_handshake: u64,
    pub syn_unanswered: u64,
    pub retransmissions: u64,
    #[serde(default)]
    pub dup_acks: u64,
    pub zero_windows: u64,
    pub dns_unanswered: u64,
    pub dns_nxdomain: u64,
    pub dns_servfail: u64,
    #[serde(default)]
    pub dns_slow: u64,
    pub icmp_unreachable: u64,
    pub icmp_frag_needed: u64,
    pub handshake_us: Option<u64>,
    pub dns_slowest_us: Option<u64>,
    pub first_symptom: Option<DateTime<Utc>>,
    /// One segment of a flow handed out early (the flow table was full);
    /// after [`FlowRecord::absorb`] of its last segment, the whole flow.
    #[serde(default)]
    pub partial: bool,
}

/// The symptom families a person asks for (`captures find --symptom`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Symptom {
    /// TCP resets, either side.
    Reset,
    /// Connection attempts or DNS queries never answered.
    Timeout,
    /// Retransmissions and duplicate ACKs (signs of loss).
    Retransmission,
    ZeroWindow,
    /// DNS unanswered, NXDOMAIN, SERVFAIL or slow.
    Dns,
    /// ICMP unreachable or fragmentation needed.
    Icmp,
}

impl Symptom {
    pub const ALL: [Symptom; 6] = [
        Symptom::Reset,
        Symptom::Timeout,
        Symptom::Retransmission,
        Symptom::ZeroWindow,
        Symptom::Dns,
        Symptom::Icmp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Symptom::Reset => "reset",
            Symptom::Timeout => "timeout",
            Symptom::Retransmission => "retransmission",
            Symptom::ZeroWindow => "zero-window",
            Symptom::Dns => "dns",
            Symptom::Icmp => "icmp",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl FlowRecord {
    /// How many events of a symptom family the flow holds. Saturating: an
    /// index record is untrusted input, and a wrapped sum would hide the
    /// flow (a debug build would panic instead).
    pub fn count(&self, symptom: Symptom) -> u64 {
        let sum = |counts: &[u64]| counts.iter().fold(0u64, |a, n| a.saturating_add(*n));
        match symptom {
            Symptom::Reset => sum(&[self.resets_src, self.resets_dst]),
            Symptom::Timeout => sum(&[self.syn_unanswered, self.dns_unanswered]),
            Symptom::Retransmission => sum(&[self.retransmissions, self.dup_acks]),
            Symptom::ZeroWindow => self.zero_windows,
            Symptom::Dns => sum(&[
                self.dns_unanswered,
                self.dns_nxdomain,
                self.dns_servfail,
                self.dns_slow,
            ]),
            Symptom::Icmp => sum(&[self.icmp_unreachable, self.icmp_frag_needed]),
        }
    }

    /// How bad the flow looks, for "worst first": failures that stop a
    /// connection (never answered, refused, unreachable) weigh more than
    /// signs of a slow one (retransmissions, zero windows). Saturating, as
    /// [`Self::count`].
    pub fn severity(&self) -> u64 {
        let resets = self.resets_src.saturating_add(self.resets_dst);
        let weighted = [
            (10, self.syn_unanswered),
            (10, self.dns_unanswered),
            (10, self.icmp_unreachable),
            (8, self.resets_in_handshake),
            (8, self.icmp_frag_needed),
            (8, self.dns_servfail),
            (5, resets.saturating_sub(self.resets_in_handshake)),
            (3, self.dns_nxdomain),
            (3, self.dns_slow),
            (2, self.zero_windows),
            (1, self.retransmissions),
            (1, self.dup_acks),
        ];
        weighted.iter().fold(0u64, |a, (weight, n)| {
            a.saturating_add(n.saturating_mul(*weight))
        })
    }

    /// Adds a later segment of the same flow (same capture, same ends in
    /// either order): counts add up (oriented as `self`), times widen, and
    /// the result is partial only while `next` is.
    pub fn absorb(&mut self, next: FlowRecord) {
        let mut next = next;
        if (next.src, next.sport) != (self.src, self.sport) {
            std::mem::swap(&mut next.packets_src, &mut next.packets_dst);
            std::mem::swap(&mut next.bytes_src, &mut next.bytes_dst);
            std::mem::swap(&mut next.resets_src, &mut next.resets_dst);
        }
        self.first = self.first.min(next.first);
        self.last = self.last.max(next.last);
        for (total, more) in [
            (&mut self.packets_src, next.packets_src),
            (&mut self.bytes_src, next.bytes_src),
            (&mut self.packets_dst, next.packets_dst),
            (&mut self.bytes_dst, next.bytes_dst),
            (&mut self.resets_src, next.resets_src),
            (&mut self.resets_dst, next.resets_dst),
            (&mut self.resets_in_handshake, next.resets_in_handshake),
            (&mut self.syn_unanswered, next.syn_unanswered),
            (&mut self.retransmissions, next.retransmissions),
            (&mut self.dup_acks, next.dup_acks),
            (&mut self.zero_windows, next.zero_windows),
            (&mut self.dns_unanswered, next.dns_unanswered),
            (&mut self.dns_nxdomain, next.dns_nxdomain),
            (&mut self.dns_servfail, next.dns_servfail),
            (&mut self.dns_slow, next.dns_slow),
            (&mut self.icmp_unreachable, next.icmp_unreachable),
            (&mut self.icmp_frag_needed, next.icmp_frag_needed),
        ] {
            *total = total.saturating_add(more);
        }
        self.handshake_us = self.handshake_us.or(next.handshake_us);
        self.dns_slowest_us = self.dns_slowest_us.max(next.dns_slowest_us);
        self.first_symptom = match (self.first_symptom, next.first_symptom) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.partial = next.partial;
    }

    /// Whether `addr` is either end of the flow.
    pub fn involves(&self, addr: IpAddr) -> bool {
        self.src == addr || self.dst == addr
    }

    /// Whether `port` is either end's port.
    pub fn uses_port(&self, port: u16) -> bool {
        self.sport == port || self.dport == port
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn symptom_names_round_trip() {
        for s in Symptom::ALL {
            assert_eq!(Symptom::parse(s.name()), Some(s));
        }
        assert_eq!(Symptom::parse("nope"), None);
    }
}
