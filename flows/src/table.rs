//! The live flows of one capture and their symptom counts. Packets come in
//! one at a time; a flow idle for [`IDLE_SECS`] of capture time is finished
//! and handed out, so memory follows the live flows, not the file size.
//!
//! The live flows are capped ([`MAX_LIVE_FLOWS`]): traffic chooses how many
//! flows a minute holds (a port scan, random DNS source ports), so when a
//! new flow finds the table full, the least recently seen flows are handed
//! out early as partial records ([`FlowRecord::partial`]) and forgotten. A
//! later packet of such a flow starts a new record; readers merge them
//! ([`crate::merge`]). Each flow's own state is bounded too (pending DNS
//! ids, table-wide [`MAX_PENDING_DNS_TOTAL`]), so the table's memory has a
//! ceiling whatever the traffic.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use spool::pcap::Record;

use crate::decode::{self, Detail, Packet, Quoted, Tcp};
use crate::schema::{FlowRecord, IDLE_SECS, SLOW_DNS_MS};

/// DNS ids remembered per flow while waiting for answers: a flow that
/// sends more unanswered queries than this counts the rest as unanswered
/// right away instead of growing.
const MAX_PENDING_DNS: usize = 256;
/// DNS ids waiting for answers over the whole table: past it, a query
/// counts as unanswered right away, as past [`MAX_PENDING_DNS`].
pub const MAX_PENDING_DNS_TOTAL: usize = 65_536;
/// Live flows the table holds by default: about 500 bytes each, in a map
/// of twice as many slots, so some 16 MiB; more flows than two minutes of
/// a busy node's real connections (a port scan or random source ports are
/// what reach it, and those flows are handed out as partial records).
pub const MAX_LIVE_FLOWS: usize = 16_384;
/// When the table is full, this fraction of it (the least recently seen
/// flows) is handed out at once: one scan of the table per batch keeps the
/// cost per packet constant.
const EVICT_FRACTION: usize = 16;
/// How often (capture time) idle flows are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// One DNS answer, for readers that want every answer time and every error
/// answer (percentiles, bursts), not only the per-flow counts: collected
/// only when asked for ([`FlowTable::collect_dns_answers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsAnswer {
    /// Time of the answer since the Unix epoch.
    pub at: Duration,
    /// Query to answer; `None` when the query was not seen.
    pub took: Option<Duration>,
    pub rcode: u8,
    /// The side that answered.
    pub server: IpAddr,
    pub client: IpAddr,
}

/// What was read, beyond the flows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    pub records: u64,
    /// Records without an IP packet (ARP, other link types, cut headers).
    pub not_ip: u64,
    /// Records handed out so far (a flow handed out early counts once per
    /// record).
    pub flows: u64,
    /// Of those, partial records: flows handed out early because the table
    /// was full.
    pub partial: u64,
    /// The most flows the table held at once (never above its cap).
    pub live_high_water: usize,
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
    /// Window and ACK number of the last segment sent (duplicate ACKs).
    window: Option<u16>,
    last_ack: Option<u32>,
    /// The last segment sent was a keep-alive (its answer is no dup ACK).
    sent_keep_alive: bool,
}

impl Side {
    /// What the next segment from this side is compared with.
    fn remember(&mut self, tcp: &Tcp, keep_alive: bool) {
        self.window = Some(tcp.window);
        self.last_ack = Some(tcp.ack);
        self.sent_keep_alive = keep_alive;
    }
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
    dup_acks: u64,
    zero_windows: u64,
    dns_pending: HashMap<u16, Duration>,
    dns_overflow: u64,
    dns_nxdomain: u64,
    dns_servfail: u64,
    dns_slow: u64,
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
            dup_acks: 0,
            zero_windows: 0,
            dns_pending: HashMap::new(),
            dns_overflow: 0,
            dns_nxdomain: 0,
            dns_servfail: 0,
            dns_slow: 0,
            dns_slowest: None,
            icmp_unreachable: 0,
            icmp_frag_needed: 0,
            first_symptom: None,
        }
    }

    fn symptom(&mut self, at: Duration) {
        self.first_symptom = Some(self.first_symptom.map_or(at, |t| t.min(at)));
    }

    /// Counts one TCP segment. The rules for retransmissions, keep-alives,
    /// zero-window probes and duplicate ACKs are Wireshark's
    /// (`tcp_analyze_sequence_number` in packet-tcp.c), so that the counts
    /// agree with its `tcp.analysis` fields.
    fn tcp(&mut self, from_src: bool, tcp: &Tcp, at: Duration) {
        if tcp.syn && !tcp.ack_flag && from_src {
            self.syns += 1;
            self.syn_at.get_or_insert(at);
        }
        if tcp.syn && tcp.ack_flag && !from_src && !self.answered {
            self.answered = true;
            self.handshake = self.syn_at.map(|s| at.saturating_sub(s));
        }
        if tcp.rst {
            let side = self.side(from_src);
            side.resets += 1;
            side.remember(tcp, false);
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
        let (side, peer) = if from_src {
            (&mut self.from_src, &self.from_dst)
        } else {
            (&mut self.from_dst, &self.from_src)
        };
        let control = tcp.syn || tcp.fin;
        let keep_alive = tcp.len <= 1
            && !control
            && side
                .next_seq
                .is_some_and(|next| tcp.seq == next.wrapping_sub(1));
        // One byte at the next sequence number into a closed window.
        let zero_window_probe =
            tcp.len == 1 && !control && side.next_seq == Some(tcp.seq) && peer.window == Some(0);
        let repeats_last_ack = tcp.len == 0
            && !control
            && tcp.window != 0
            && side.window == Some(tcp.window)
            && side.next_seq == Some(tcp.seq)
            && side.last_ack == Some(tcp.ack);
        let dup_ack = repeats_last_ack && !peer.sent_keep_alive;
        let occupies = tcp.len + u32::from(tcp.syn) + u32::from(tcp.fin);
        let end = tcp.seq.wrapping_add(occupies);
        let retransmitted = occupies > 0
            && !keep_alive
            && side.next_seq.is_some_and(|next| seq_before(tcp.seq, next));
        // The highest sequence number sent; the first segment seen from a
        // side sets it, a zero-window probe does not move it.
        if !zero_window_probe && side.next_seq.is_none_or(|next| seq_before(next, end)) {
            side.next_seq = Some(end);
        }
        side.remember(tcp, keep_alive);
        if dup_ack {
            self.dup_acks += 1;
            self.symptom(at);
        }
        if retransmitted {
            self.retransmissions += 1;
            self.symptom(at);
        }
    }

    fn side(&mut self, from_src: bool) -> &mut Side {
        if from_src {
            &mut self.from_src
        } else {
            &mut self.from_dst
        }
    }

    /// Counts one DNS message; for an answer, returns how long its query
    /// waited (`Some(None)` when the query was not seen).
    /// `pending_total` is the table's count of pending ids, kept in step.
    fn dns(
        &mut self,
        id: u16,
        response: bool,
        rcode: u8,
        at: Duration,
        pending_total: &mut usize,
    ) -> Option<Option<Duration>> {
        if !response {
            if self.dns_pending.contains_key(&id) {
                return None;
            }
            if self.dns_pending.len() < MAX_PENDING_DNS && *pending_total < MAX_PENDING_DNS_TOTAL {
                self.dns_pending.insert(id, at);
                *pending_total += 1;
            } else {
                self.dns_overflow += 1;
            }
            return None;
        }
        let took = self.dns_pending.remove(&id).map(|asked| {
            *pending_total = pending_total.saturating_sub(1);
            at.saturating_sub(asked)
        });
        if let Some(took) = took {
            self.dns_slowest = Some(self.dns_slowest.map_or(took, |s| s.max(took)));
            if took > Duration::from_millis(SLOW_DNS_MS) {
                self.dns_slow += 1;
                self.symptom(at);
            }
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
        Some(took)
    }

    /// The flow's record; `partial` when it is handed out before its end
    /// (the table was full).
    fn record(mut self, capture: &str, partial: bool) -> FlowRecord {
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
            dup_acks: self.dup_acks,
            zero_windows: self.zero_windows,
            dns_unanswered: unanswered_dns,
            dns_nxdomain: self.dns_nxdomain,
            dns_servfail: self.dns_servfail,
            dns_slow: self.dns_slow,
            icmp_unreachable: self.icmp_unreachable,
            icmp_frag_needed: self.icmp_frag_needed,
            handshake_us: self.handshake.map(micros),
            dns_slowest_us: self.dns_slowest.map(micros),
            first_symptom: self.first_symptom.map(time),
            partial,
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
    max_live: usize,
    /// DNS ids pending over every live flow.
    pending_dns: usize,
    done: Vec<FlowRecord>,
    last_sweep: Option<Duration>,
    stats: TableStats,
    /// Every DNS answer since the last drain, when asked for.
    dns_answers: Option<Vec<DnsAnswer>>,
}

impl FlowTable {
    /// A table whose records name `capture` (the capture's object key, or
    /// a file path for local files).
    pub fn new(capture: impl Into<String>) -> Self {
        Self {
            capture: capture.into(),
            flows: HashMap::new(),
            max_live: MAX_LIVE_FLOWS,
            pending_dns: 0,
            done: Vec::new(),
            last_sweep: None,
            stats: TableStats::default(),
            dns_answers: None,
        }
    }

    /// Holds at most `max_live` flows (at least one) instead of
    /// [`MAX_LIVE_FLOWS`].
    pub fn max_live(mut self, max_live: usize) -> Self {
        self.max_live = max_live.max(1);
        self
    }

    /// Also keeps every DNS answer (its time, how long it took, its RCODE)
    /// until [`Self::drain_dns_answers`]: for percentiles and bursts across
    /// flows. The uploader does not ask; `captures explain` does.
    pub fn collect_dns_answers(mut self) -> Self {
        self.dns_answers = Some(Vec::new());
        self
    }

    /// The DNS answers seen since the last call (none unless collected).
    pub fn drain_dns_answers(&mut self) -> impl Iterator<Item = DnsAnswer> + '_ {
        self.dns_answers
            .iter_mut()
            .flat_map(|answers| answers.drain(..))
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
        self.make_room_for(&key);
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
            } => {
                if let (Some(took), Some(answers)) = (
                    flow.dns(id, response, rcode, at, &mut self.pending_dns),
                    self.dns_answers.as_mut(),
                ) {
                    answers.push(DnsAnswer {
                        at,
                        took,
                        rcode,
                        server: packet.src,
                        client: packet.dst,
                    });
                }
            }
            Detail::IcmpError {
                frag_needed,
                quoted,
            } => self.icmp_error(&quoted, frag_needed, at),
        }
    }

    /// Counts an ICMP error against the flow whose packet it quotes.
    fn icmp_error(&mut self, quoted: &Quoted, frag_needed: bool, at: Duration) {
        let (src, dst) = ((quoted.src, quoted.sport), (quoted.dst, quoted.dport));
        let key = Key::new(quoted.proto, src, dst);
        self.make_room_for(&key);
        let flow = self
            .flows
            .entry(key)
            .or_insert_with(|| Flow::new(quoted.proto, src, dst, at));
        if frag_needed {
            flow.icmp_frag_needed += 1;
        } else {
            flow.icmp_unreachable += 1;
        }
        flow.symptom(at);
    }

    /// Before `key` is looked up to be counted: when it is new and the
    /// table is full, hands out the least recently seen flows as partial
    /// records. Keeps the high-water mark.
    fn make_room_for(&mut self, key: &Key) {
        if self.flows.contains_key(key) {
            return;
        }
        if self.flows.len() >= self.max_live {
            self.evict_least_recent();
        }
        self.stats.live_high_water = self.stats.live_high_water.max(self.flows.len() + 1);
    }

    fn evict_least_recent(&mut self) {
        let mut by_age: Vec<(Duration, Key)> =
            self.flows.iter().map(|(k, f)| (f.last, *k)).collect();
        let batch = (self.max_live / EVICT_FRACTION).clamp(1, by_age.len().max(1));
        if batch < by_age.len() {
            by_age.select_nth_unstable_by_key(batch, |(last, _)| *last);
            by_age.truncate(batch);
        }
        by_age.sort_unstable_by_key(|(last, _)| *last);
        for (_, key) in by_age {
            if let Some(flow) = self.flows.remove(&key) {
                self.pending_dns = self.pending_dns.saturating_sub(flow.dns_pending.len());
                self.done.push(flow.record(&self.capture, true));
                self.stats.flows += 1;
                self.stats.partial += 1;
            }
        }
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
                self.pending_dns = self.pending_dns.saturating_sub(flow.dns_pending.len());
                self.done.push(flow.record(&self.capture, false));
                self.stats.flows += 1;
            }
        }
    }

    /// The flows finished so far (idle long enough), each handed out once.
    pub fn drain(&mut self) -> std::vec::Drain<'_, FlowRecord> {
        self.done.drain(..)
    }

    /// Ends the capture: every flow still live is finished, oldest first.
    pub fn finish(self) -> (Vec<FlowRecord>, TableStats) {
        let mut out = Vec::new();
        let stats = self.finish_each(|record| out.push(record));
        (out, stats)
    }

    /// Ends the capture, handing each record to `each` (those not drained
    /// yet, then every live flow, oldest first) without gathering them.
    pub fn finish_each(mut self, mut each: impl FnMut(FlowRecord)) -> TableStats {
        self.done.drain(..).for_each(&mut each);
        let mut by_start: Vec<(Duration, Key)> =
            self.flows.iter().map(|(k, f)| (f.first, *k)).collect();
        by_start.sort_unstable_by_key(|(first, _)| *first);
        for (_, key) in by_start {
            if let Some(flow) = self.flows.remove(&key) {
                self.stats.flows += 1;
                each(flow.record(&self.capture, false));
            }
        }
        self.stats
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

    /// An Ethernet frame of a TCP segment with the ACK flag and `ack`.
    fn ack(
        from: [u8; 4],
        to: [u8; 4],
        ports: (u16, u16),
        seq: u32,
        ack: u32,
        window: u16,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(from, to, 64)
            .tcp(ports.0, ports.1, seq, window)
            .ack(ack)
            .write(&mut out, &[])
            .unwrap();
        out
    }

    /// An Ethernet frame of a DNS message (only its header).
    fn dns(
        from: [u8; 4],
        to: [u8; 4],
        ports: (u16, u16),
        id: u16,
        answer_rcode: Option<u8>,
    ) -> Vec<u8> {
        let mut header = [0u8; 12];
        header[..2].copy_from_slice(&id.to_be_bytes());
        if let Some(rcode) = answer_rcode {
            header[2] = 0x80;
            header[3] = rcode;
        }
        let mut out = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(from, to, 64)
            .udp(ports.0, ports.1)
            .write(&mut out, &header)
            .unwrap();
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

    #[test]
    fn a_full_table_hands_out_the_least_recent_flows_as_partial_records() {
        let mut t = FlowTable::new("k").max_live(64);
        for i in 0..1000u16 {
            add(
                &mut t,
                u64::from(i),
                &tcp(A, B, (10000 + i, 80), 1, "S", 100, &[]),
            );
            assert!(t.live() <= 64);
        }
        // The first flow comes back: a new record of the same flow.
        add(&mut t, 1000, &tcp(B, A, (80, 10000), 900, "SA", 100, &[]));
        let handed_out: Vec<FlowRecord> = t.drain().collect();
        assert!(handed_out.iter().all(|f| f.partial));
        let (rest, stats) = t.finish();
        assert!(rest.iter().all(|f| !f.partial));
        let newest_out = handed_out.iter().map(|f| f.sport).max().unwrap();
        let oldest_kept = rest.iter().map(|f| f.sport).filter(|p| *p != 10000).min();
        assert!(
            oldest_kept.unwrap() > newest_out,
            "the least recent leave first"
        );
        assert!(
            rest.iter().any(|f| f.sport == 10000),
            "a flow that comes back is counted again"
        );
        assert_eq!(stats.live_high_water, 64);
        assert_eq!(stats.flows, 1001);
        assert_eq!(stats.partial as usize, handed_out.len());
    }

    #[test]
    fn pending_dns_ids_are_bounded_over_the_whole_table() {
        let mut t = FlowTable::new("k");
        let per_flow = MAX_PENDING_DNS as u16;
        let flows = (MAX_PENDING_DNS_TOTAL / MAX_PENDING_DNS) as u16 + 4;
        for port in 0..flows {
            for id in 0..per_flow {
                add(&mut t, 0, &dns(A, B, (5000 + port, 53), id, None));
            }
        }
        assert_eq!(t.pending_dns, MAX_PENDING_DNS_TOTAL);
        let (flows, _) = t.finish();
        let unanswered: u64 = flows.iter().map(|f| f.dns_unanswered).sum();
        assert_eq!(
            unanswered,
            u64::from(flows.len() as u16) * u64::from(per_flow)
        );
    }

    #[test]
    fn an_ack_repeating_the_last_ack_and_window_is_a_duplicate_ack_and_a_window_update_is_not() {
        let mut t = FlowTable::new("k");
        let ports = (40000, 80);
        add(&mut t, 0, &ack(A, B, ports, 101, 901, 500));
        add(&mut t, 1, &ack(A, B, ports, 101, 901, 500));
        add(&mut t, 2, &ack(A, B, ports, 101, 901, 500));
        // The window changed: a window update.
        add(&mut t, 3, &ack(A, B, ports, 101, 901, 600));
        add(&mut t, 4, &ack(A, B, ports, 101, 901, 600));
        // A new ACK number: not a duplicate.
        add(&mut t, 5, &ack(A, B, ports, 101, 950, 600));
        let (flows, _) = t.finish();
        assert_eq!(flows[0].dup_acks, 3);
        assert_eq!(flows[0].retransmissions, 0);
        assert_eq!(flows[0].count(crate::Symptom::Retransmission), 3);
    }

    #[test]
    fn the_answer_to_a_keep_alive_is_not_a_duplicate_ack_nor_the_keep_alive_a_retransmission() {
        let mut t = FlowTable::new("k");
        add(&mut t, 0, &tcp(A, B, (40000, 80), 100, "A", 500, b"hello"));
        add(&mut t, 1, &ack(B, A, (80, 40000), 900, 105, 500));
        // Keep-alive: no data, one byte before the next sequence number.
        add(&mut t, 2, &ack(A, B, (40000, 80), 104, 900, 500));
        add(&mut t, 3, &ack(B, A, (80, 40000), 900, 105, 500));
        let (flows, _) = t.finish();
        assert_eq!((flows[0].dup_acks, flows[0].retransmissions), (0, 0));
    }

    #[test]
    fn dns_answers_later_than_the_threshold_are_slow_and_every_answer_is_collected() {
        let mut t = FlowTable::new("k").collect_dns_answers();
        let slow_ms = SLOW_DNS_MS + 100;
        add(&mut t, 0, &dns(A, B, (5000, 53), 7, None));
        add(&mut t, slow_ms, &dns(B, A, (53, 5000), 7, Some(0)));
        add(&mut t, 0, &dns(A, B, (5001, 53), 8, None));
        add(&mut t, 4, &dns(B, A, (53, 5001), 8, Some(3)));
        let answers: Vec<DnsAnswer> = t.drain_dns_answers().collect();
        assert_eq!(
            answers
                .iter()
                .map(|a| (a.took, a.rcode, a.server))
                .collect::<Vec<_>>(),
            [
                (Some(Duration::from_millis(slow_ms)), 0, IpAddr::from(B)),
                (Some(Duration::from_millis(4)), 3, IpAddr::from(B)),
            ]
        );
        assert_eq!(t.drain_dns_answers().count(), 0, "each handed out once");
        let (flows, _) = t.finish();
        let from_port = |port: u16| flows.iter().find(|f| f.sport == port).unwrap();
        assert_eq!((from_port(5000).dns_slow, from_port(5001).dns_slow), (1, 0));
        assert_eq!(from_port(5000).dns_slowest_us, Some(slow_ms * 1000));
        assert_eq!(from_port(5001).dns_nxdomain, 1);
    }

    #[test]
    fn dns_answers_are_not_kept_unless_asked_for() {
        let mut t = FlowTable::new("k");
        add(&mut t, 0, &dns(A, B, (5000, 53), 7, None));
        add(&mut t, 1, &dns(B, A, (53, 5000), 7, Some(0)));
        assert_eq!(t.drain_dns_answers().count(), 0);
    }
}
