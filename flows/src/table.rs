//! The live flows of one capture and their symptom counts. Packets come in
//! one at a time; a flow idle for [`IDLE_SECS`] of capture time is finished
//! and handed out, so memory follows the live flows, not the file size.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use spool::pcap::Record;

use crate::decode::{self, Detail, Packet, Quoted, Tcp};
use crate::schema::{FlowRecord, IDLE_SECS};

/// DNS ids remembered per flow while waiting for answers: a flow that
/// sends more unanswered queries than this counts the rest as unanswered
/// right away instead of growing.
const MAX_PENDING_DNS: usize = 256;
/// How often (capture time) idle flows are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// What was read, beyond the flows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    pub records: u64,
    /// Records without an IP packet (ARP, other link types, cut headers).
    pub not_ip: u64,
    /// Flows handed out so far.
    pub flows: u64,
}

/// Both ends in a fixed order, so either direction finds the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    proto: u8,
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
}

impl Key {
    fn new(proto: u8, a: (IpAddr, u16), b: (IpAddr, u16)) -> Self {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        Self { proto, lo, hi }
    }
}

#[derive(Debug, Default)]
struct Side {
    packets: u64,
    bytes: u64,
    /// Highest sequence number sent plus one (TCP).
    next_seq: Option<u32>,
    resets: u64,
}

#[derive(Debug)]
struct Flow {
    proto: u8,
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    first: Duration,
    last: Duration,
    from_src: Side,
    from_dst: Side,
    syns: u64,
    syn_at: Option<Duration>,
    answered: bool,
    handshake: Option<Duration>,
    resets_in_handshake: u64,
    retransmissions: u64,
    zero_windows: u64,
    dns_pending: HashMap<u16, Duration>,
    dns_overflow: u64,
    dns_nxdomain: u64,
    dns_servfail: u64,
    dns_slowest: Option<Duration>,
    icmp_unreachable: u64,
    icmp_frag_needed: u64,
    first_symptom: Option<Duration>,
}

impl Flow {
    fn new(proto: u8, src: (IpAddr, u16), dst: (IpAddr, u16), at: Duration) -> Self {
        Self {
            proto,
            src,
            dst,
            first: at,
            last: at,
            from_src: Side::default(),
            from_dst: Side::default(),
            syns: 0,
            syn_at: None,
            answered: false,
            handshake: None,
            resets_in_handshake: 0,
            retransmissions: 0,
            zero_windows: 0,
            dns_pending: HashMap::new(),
            dns_overflow: 0,
            dns_nxdomain: 0,
            dns_servfail: 0,
            dns_slowest: None,
            icmp_unreachable: 0,
            icmp_frag_needed: 0,
            first_symptom: None,
        }
    }

    fn symptom(&mut self, at: Duration) {
        self.first_symptom = Some(self.first_symptom.map_or(at, |t| t.min(at)));
    }

    fn tcp(&mut self, from_src: bool, tcp: &Tcp, at: Duration) {
        if tcp.syn && !tcp.ack_flag && from_src {
            self.syns += 1;
            self.syn_at.get_or_insert(at);
        }
        if tcp.syn && tcp.ack_flag && !from_src && !self.answered {
            self.answered = true;
            self.handshake = self.syn_at.map(|s| at.saturating_sub(s));
        }
        let side = if from_src {
            &mut self.from_src
        } else {
            &mut self.from_dst
        };
        if tcp.rst {
            side.resets += 1;
            // Before the SYN/ACK: the connection was refused or aborted
            // while opening.
            if self.syns > 0 && !self.answered {
                self.resets_in_handshake += 1;
                // A reset answers the SYN: it was not left unanswered.
                self.answered |= !from_src;
            }
            self.symptom(at);
            return;
        }
        if tcp.window == 0 && !tcp.syn && !tcp.fin {
            self.zero_windows += 1;
            self.symptom(at);
        }
        let side = if from_src {
            &mut self.from_src
        } else {
            &mut self.from_dst
        };
        let occupies = tcp.len + u32::from(tcp.syn) + u32::from(tcp.fin);
        if occupies == 0 {
            return;
        }
        let end = tcp.seq.wrapping_add(occupies);
        let retransmitted = match side.next_seq {
            Some(next) => {
                // A keep-alive re-sends the last byte on purpose.
                let keep_alive =
                    tcp.len <= 1 && !tcp.syn && !tcp.fin && tcp.seq == next.wrapping_sub(1);
                if seq_before(next, end) {
                    side.next_seq = Some(end);
                }
                seq_before(tcp.seq, next) && !keep_alive
            }
            None => {
                side.next_seq = Some(end);
                false
            }
        };
        if retransmitted {
            self.retransmissions += 1;
            self.symptom(at);
        }
    }

    fn dns(&mut self, id: u16, response: bool, rcode: u8, at: Duration) {
        if !response {
            if self.dns_pending.len() < MAX_PENDING_DNS {
                self.dns_pending.entry(id).or_insert(at);
            } else {
                self.dns_overflow += 1;
            }
            return;
        }
        if let Some(asked) = self.dns_pending.remove(&id) {
            let took = at.saturating_sub(asked);
            self.dns_slowest = Some(self.dns_slowest.map_or(took, |s| s.max(took)));
        }
        match rcode {
            2 => {
                self.dns_servfail += 1;
                self.symptom(at);
            }
            3 => {
                self.dns_nxdomain += 1;
                self.symptom(at);
            }
            _ => {}
        }
    }

    fn record(mut self, capture: &str) -> FlowRecord {
        let unanswered_dns = self.dns_pending.len() as u64 + self.dns_overflow;
        if let Some(asked) = self.dns_pending.values().min().copied() {
            self.symptom(asked);
        }
        let syn_unanswered = if self.answered { 0 } else { self.syns };
        if syn_unanswered > 0
            && let Some(at) = self.syn_at
        {
            self.symptom(at);
        }
        FlowRecord {
            capture: capture.to_owned(),
            proto: decode::proto_name(self.proto),
            src: self.src.0,
            sport: self.src.1,
            dst: self.dst.0,
            dport: self.dst.1,
            first: time(self.first),
            last: time(self.last),
            packets_src: self.from_src.packets,
            bytes_src: self.from_src.bytes,
            packets_dst: self.from_dst.packets,
            bytes_dst: self.from_dst.bytes,
            resets_src: self.from_src.resets,
            resets_dst: self.from_dst.resets,
            resets_in_handshake: self.resets_in_handshake,
            syn_unanswered,
            retransmissions: self.retransmissions,
            zero_windows: self.zero_windows,
            dns_unanswered: unanswered_dns,
            dns_nxdomain: self.dns_nxdomain,
            dns_servfail: self.dns_servfail,
            icmp_unreachable: self.icmp_unreachable,
            icmp_frag_needed: self.icmp_frag_needed,
            handshake_us: self.handshake.map(micros),
            dns_slowest_us: self.dns_slowest.map(micros),
            first_symptom: self.first_symptom.map(time),
        }
    }
}

/// `a` comes before `b` in sequence space (RFC 1982 arithmetic).
fn seq_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A record time as UTC (the epoch for a time chrono cannot hold).
pub fn time(since_epoch: Duration) -> DateTime<Utc> {
    i64::try_from(since_epoch.as_secs())
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, since_epoch.subsec_nanos()))
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// The live flows of one capture.
#[derive(Debug)]
pub struct FlowTable {
    capture: String,
    flows: HashMap<Key, Flow>,
    done: Vec<FlowRecord>,
    last_sweep: Option<Duration>,
    stats: TableStats,
}

impl FlowTable {
    /// A table whose records name `capture` (the capture's object key, or
    /// a file path for local files).
    pub fn new(capture: impl Into<String>) -> Self {
        Self {
            capture: capture.into(),
            flows: HashMap::new(),
            done: Vec::new(),
            last_sweep: None,
            stats: TableStats::default(),
        }
    }

    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// Flows live now (what memory follows).
    pub fn live(&self) -> usize {
        self.flows.len()
    }

    /// Accounts for one pcap record.
    pub fn add(&mut self, record: Record<'_>) {
        self.stats.records += 1;
        match decode::decode(record.link_type, record.data, record.original_len) {
            Some(packet) => self.add_packet(record.at, record.original_len, &packet),
            None => self.stats.not_ip += 1,
        }
        let sweep_due = match self.last_sweep {
            None => {
                self.last_sweep = Some(record.at);
                false
            }
            Some(last) => record.at >= last + SWEEP_EVERY,
        };
        if sweep_due {
            self.last_sweep = Some(record.at);
            self.sweep(record.at);
        }
    }

    fn add_packet(&mut self, at: Duration, frame_len: u32, packet: &Packet) {
        let (src, dst) = ((packet.src, packet.sport), (packet.dst, packet.dport));
        let key = Key::new(packet.proto, src, dst);
        let flow = self.flows.entry(key).or_insert_with(|| {
            // A SYN/ACK seen first was sent by the side that did not open.
            let reversed = matches!(packet.detail, Detail::Tcp(t) if t.syn && t.ack_flag);
            if reversed {
                Flow::new(packet.proto, dst, src, at)
            } else {
                Flow::new(packet.proto, src, dst, at)
            }
        });
        flow.first = flow.first.min(at);
        flow.last = flow.last.max(at);
        let from_src = flow.src == src;
        let side = if from_src {
            &mut flow.from_src
        } else {
            &mut flow.from_dst
        };
        side.packets += 1;
        side.bytes += u64::from(frame_len);
        match packet.detail {
            Detail::None => {}
            Detail::Tcp(tcp) => flow.tcp(from_src, &tcp, at),
            Detail::Dns {
                id,
                response,
                rcode,
            } => flow.dns(id, response, rcode, at),
            Detail::IcmpError {
                frag_needed,
                quoted,
            } => self.icmp_error(&quoted, frag_needed, at),
        }
    }

    /// Counts an ICMP error against the flow whose packet it quotes.
    fn icmp_error(&mut self, quoted: &Quoted, frag_needed: bool, at: Duration) {
        let (src, dst) = ((quoted.src, quoted.sport), (quoted.dst, quoted.dport));
        let flow = self
            .flows
            .entry(Key::new(quoted.proto, src, dst))
            .or_insert_with(|| Flow::new(quoted.proto, src, dst, at));
        if frag_needed {
            flow.icmp_frag_needed += 1;
        } else {
            flow.icmp_unreachable += 1;
        }
        flow.symptom(at);
    }

    fn sweep(&mut self, now: Duration) {
        let idle = Duration::from_secs(IDLE_SECS);
        let gone: Vec<Key> = self
            .flows
            .iter()
            .filter(|(_, f)| f.last + idle < now)
            .map(|(k, _)| *k)
            .collect();
        for key in gone {
            if let Some(flow) = self.flows.remove(&key) {
                self.done.push(flow.record(&self.capture));
                self.stats.flows += 1;
            }
        }
    }

    /// The flows finished so far (idle long enough), each handed out once.
    pub fn drain(&mut self) -> std::vec::Drain<'_, FlowRecord> {
        self.done.drain(..)
    }

    /// Ends the capture: every flow still live is finished, oldest first.
    pub fn finish(mut self) -> (Vec<FlowRecord>, TableStats) {
        let mut rest: Vec<Flow> = self.flows.drain().map(|(_, f)| f).collect();
        rest.sort_by_key(|f| f.first);
        self.stats.flows += rest.len() as u64;
        let capture = self.capture;
        let mut out = self.done;
        out.extend(rest.into_iter().map(|f| f.record(&capture)));
        (out, self.stats)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use etherparse::PacketBuilder;

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];

    /// An Ethernet frame of a TCP segment from `from` to the other side.
    fn tcp(
        from: [u8; 4],
        to: [u8; 4],
        ports: (u16, u16),
        seq: u32,
        flags: &str,
        window: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(from, to, 64)
            .tcp(ports.0, ports.1, seq, window);
        if flags.contains('S') {
            b = b.syn();
        }
        if flags.contains('A') {
            b = b.ack(1);
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn add(table: &mut FlowTable, at_ms: u64, frame: &[u8]) {
        table.add(Record {
            link_type: decode::ETHERNET,
            at: Duration::from_millis(at_ms),
            original_len: u32::try_from(frame.len()).unwrap(),
            data: frame,
        });
    }

    #[test]
    fn a_syn_sent_three_times_without_answer_is_unanswered_and_retransmitted() {
        let mut t = FlowTable::new("k");
        for at in [0, 1000, 3000] {
            add(&mut t, at, &tcp(A, B, (40000, 443), 7, "S", 64240, &[]));
        }
        let (flows, _) = t.finish();
        assert_eq!(flows.len(), 1);
        let f = &flows[0];
        assert_eq!((f.syn_unanswered, f.retransmissions), (3, 2));
        assert_eq!(f.first_symptom, Some(time(Duration::ZERO)));
        assert_eq!(f.handshake_us, None);
    }

    #[test]
    fn handshake_time_data_retransmission_and_zero_window_are_counted_per_flow() {
        let mut t = FlowTable::new("k");
        add(&mut t, 0, &tcp(A, B, (40000, 80), 100, "S", 64240, &[]));
        add(&mut t, 5, &tcp(B, A, (80, 40000), 900, "SA", 64240, &[]));
        add(
            &mut t,
            6,
            &tcp(A, B, (40000, 80), 101, "A", 64240, b"GET /"),
        );
        add(
            &mut t,
            300,
            &tcp(A, B, (40000, 80), 101, "A", 64240, b"GET /"),
        );
        add(&mut t, 301, &tcp(B, A, (80, 40000), 901, "A", 0, &[]));
        let (flows, _) = t.finish();
        let f = &flows[0];
        assert_eq!(f.src, std::net::IpAddr::from(A));
        assert_eq!(f.handshake_us, Some(5000));
        assert_eq!(
            (f.retransmissions, f.zero_windows, f.syn_unanswered),
            (1, 1, 0)
        );
        assert_eq!((f.packets_src, f.packets_dst), (3, 2));
    }

    #[test]
    fn idle_flows_are_handed_out_so_memory_follows_the_live_flows() {
        let mut t = FlowTable::new("k");
        let idle_ms = IDLE_SECS * 1000;
        for i in 0..1000u16 {
            // One short flow every 1 s of capture time.
            let at = u64::from(i) * 1000;
            add(&mut t, at, &tcp(A, B, (10000 + i, 80), 1, "S", 100, &[]));
            if at > idle_ms + 2 * SWEEP_EVERY.as_millis() as u64 {
                assert!(t.live() <= (IDLE_SECS + 2 * SWEEP_EVERY.as_secs() + 1) as usize);
            }
        }
        let handed_out = t.drain().count();
        assert!(handed_out > 800, "{handed_out}");
        let (rest, stats) = t.finish();
        assert_eq!(stats.flows, 1000);
        assert_eq!(rest.len() + handed_out, 1000);
    }
}
