//! Putting a flow's partial records back together. The flow table hands a
//! flow out early, as a `partial` record, when the table is full (see
//! [`crate::schema`]); a later packet of it starts another record in the
//! same capture. Readers pass one capture's records through a
//! [`PartialMerger`] in the order they were written: a partial record is
//! held until the record that continues it arrives, and the two leave as
//! one.
//!
//! What merging needs is only the open partial records, and those are
//! capped too: when more are open than the cap, the least recently seen
//! leave as they are (still `partial`, still found; a reader then shows
//! that flow in more than one row). Counters add up either way, so totals
//! do not depend on merging.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::schema::FlowRecord;

/// Open partial records a merger holds by default (a few hundred bytes
/// each): as many as the flow table holds live flows, so a flow the table
/// handed out is still open when its next segment arrives unless as many
/// other flows were handed out meanwhile.
pub const MAX_OPEN_PARTIALS: usize = crate::table::MAX_LIVE_FLOWS;

/// When the merger is full, this fraction of it (least recently seen
/// first) leaves unmerged at once, one scan per batch.
const FLUSH_FRACTION: usize = 16;

/// A flow's ends in a fixed order, so either direction finds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FlowKey {
    capture: String,
    proto: String,
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
}

impl FlowKey {
    fn of(record: &FlowRecord) -> Self {
        let (a, b) = ((record.src, record.sport), (record.dst, record.dport));
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        Self {
            capture: record.capture.clone(),
            proto: record.proto.clone(),
            lo,
            hi,
        }
    }
}

/// Merges the partial records of one capture's flows, in bounded memory.
#[derive(Debug)]
pub struct PartialMerger {
    open: HashMap<FlowKey, FlowRecord>,
    max_open: usize,
    /// Records that absorbed a later segment.
    merged: u64,
}

impl Default for PartialMerger {
    fn default() -> Self {
        Self::new(MAX_OPEN_PARTIALS)
    }
}

impl PartialMerger {
    /// A merger holding at most `max_open` (at least one) open partial
    /// records.
    pub fn new(max_open: usize) -> Self {
        Self {
            open: HashMap::new(),
            max_open: max_open.max(1),
            merged: 0,
        }
    }

    /// Takes the next record; hands `out` every record that is whole (or
    /// has to leave unmerged).
    pub fn push(&mut self, record: FlowRecord, out: &mut impl FnMut(FlowRecord)) {
        let key = FlowKey::of(&record);
        if let Some(open) = self.open.get_mut(&key) {
            open.absorb(record);
            self.merged += 1;
            if !open.partial
                && let Some(whole) = self.open.remove(&key)
            {
                out(whole);
            }
            return;
        }
        if !record.partial {
            out(record);
            return;
        }
        if self.open.len() >= self.max_open {
            self.flush_least_recent(out);
        }
        self.open.insert(key, record);
    }

    /// Partial records whose continuation never came: they leave as they
    /// are, oldest first.
    pub fn finish(mut self, out: &mut impl FnMut(FlowRecord)) -> u64 {
        let mut rest: Vec<FlowRecord> = self.open.drain().map(|(_, r)| r).collect();
        rest.sort_unstable_by_key(|r| r.first);
        rest.into_iter().for_each(out);
        self.merged
    }

    /// Records that absorbed a later segment so far.
    pub fn merged(&self) -> u64 {
        self.merged
    }

    fn flush_least_recent(&mut self, out: &mut impl FnMut(FlowRecord)) {
        let mut by_age: Vec<(chrono::DateTime<chrono::Utc>, FlowKey)> =
            self.open.iter().map(|(k, r)| (r.last, k.clone())).collect();
        let batch = (self.max_open / FLUSH_FRACTION).clamp(1, by_age.len().max(1));
        if batch < by_age.len() {
            by_age.select_nth_unstable_by_key(batch, |(last, _)| *last);
            by_age.truncate(batch);
        }
        by_age.sort_unstable_by_key(|(last, _)| *last);
        for (_, key) in by_age {
            if let Some(record) = self.open.remove(&key) {
                out(record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::{DateTime, Utc};

    fn record(from: (u8, u16), to: (u8, u16), at: i64, partial: bool) -> FlowRecord {
        let time = DateTime::<Utc>::from_timestamp(1_796_000_000 + at, 0).unwrap();
        FlowRecord {
            capture: "k".into(),
            proto: "tcp".into(),
            src: IpAddr::from([10, 0, 0, from.0]),
            sport: from.1,
            dst: IpAddr::from([10, 0, 0, to.0]),
            dport: to.1,
            first: time,
            last: time,
            packets_src: 1,
            bytes_src: 60,
            packets_dst: 0,
            bytes_dst: 0,
            resets_src: 0,
            resets_dst: 0,
            resets_in_handshake: 0,
            syn_unanswered: 0,
            retransmissions: 0,
            dup_acks: 0,
            zero_windows: 0,
            dns_unanswered: 0,
            dns_nxdomain: 0,
            dns_servfail: 0,
            dns_slow: 0,
            icmp_unreachable: 0,
            icmp_frag_needed: 0,
            handshake_us: None,
            dns_slowest_us: None,
            first_symptom: None,
            partial,
        }
    }

    #[test]
    fn a_partial_record_and_its_reversed_continuation_leave_as_one_flow() {
        let mut merger = PartialMerger::default();
        let mut out = Vec::new();
        merger.push(record((1, 40_000), (2, 80), 0, true), &mut |r| out.push(r));
        assert!(out.is_empty(), "a partial record waits for the rest");
        let mut answer = record((2, 80), (1, 40_000), 30, false);
        answer.resets_src = 1;
        merger.push(answer, &mut |r| out.push(r));
        assert_eq!(out.len(), 1);
        let f = &out[0];
        assert_eq!((f.src, f.sport), (IpAddr::from([10, 0, 0, 1]), 40_000));
        assert_eq!((f.packets_src, f.packets_dst), (1, 1));
        assert_eq!(
            (f.resets_src, f.resets_dst),
            (0, 1),
            "oriented as the first segment"
        );
        assert_eq!((f.last - f.first).num_seconds(), 30);
        assert!(!f.partial);
        assert_eq!(merger.finish(&mut |r| out.push(r)), 1);
    }

    #[test]
    fn whole_records_pass_straight_through_and_open_partials_stay_bounded() {
        let mut merger = PartialMerger::new(32);
        let mut out = Vec::new();
        for port in 0..1_000u16 {
            merger.push(
                record((1, port), (2, 80), i64::from(port), true),
                &mut |r| out.push(r),
            );
            assert!(merger.open.len() <= 32);
        }
        merger.push(record((3, 1), (2, 80), 0, false), &mut |r| out.push(r));
        assert_eq!(out.last().unwrap().src, IpAddr::from([10, 0, 0, 3]));
        merger.finish(&mut |r| out.push(r));
        assert_eq!(out.len(), 1_001, "every record leaves once");
        assert!(out.iter().filter(|r| r.partial).count() == 1_000);
    }
}
