//! The verdict of a ledger run and its one summary: what was sent, what
//! tcpdump captured, what the bucket holds, what was done to the pipeline,
//! and every invariant that failed.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::census::Census;
use super::fault_proxy::Counts;
use super::pipeline::TcpdumpCounts;
use super::rig::FaultLog;
use super::scenario::{FaultKind, Scenario, settings};
use super::traffic::{Slice, sent_at};

/// A capture deleted unsent to keep the spool budget, from a log line.
#[derive(Debug, Clone)]
pub struct Drop {
    pub file: String,
    pub bytes: u64,
    /// `uploader` or `launcher`.
    pub by: &'static str,
}

/// The budget drops in a JSON log: events whose message is `logged` (the
/// dropping binary's own constant), attributed to `by`.
pub fn budget_drops(log: &str, logged: &str, by: &'static str) -> Vec<Drop> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            event
                .get("message")
                .and_then(|m| m.as_str())
                .is_some_and(|m| m == logged)
        })
        .map(|event| Drop {
            file: event
                .get("file")
                .and_then(|f| f.as_str())
                .unwrap_or_default()
                .to_owned(),
            bytes: event.get("bytes").and_then(|b| b.as_u64()).unwrap_or(0),
            by,
        })
        .collect()
}

/// The capture's start time from its file name (`20261127T142503Z….pcap`).
fn capture_start(file: &str) -> Option<SystemTime> {
    let stamp = file.get(..16)?;
    let at = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").ok()?;
    let secs = u64::try_from(at.and_utc().timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// What the run measured, before judging.
#[derive(Debug)]
pub struct Outcome {
    pub sent: u64,
    pub send_errors: u64,
    pub slices: Vec<Slice>,
    pub census: Census,
    /// tcpdump's own counts per launcher run (`None`: killed, no counts).
    pub tcpdump: Vec<Option<TcpdumpCounts>>,
    /// What the kernel dropped in runs ended by SIGKILL (their counts are
    /// asked for just before the kill).
    pub killed_kernel_drops: u64,
    pub drops: Vec<Drop>,
    pub leftovers: Vec<String>,
    pub problems: Vec<String>,
    /// Times the uploader logged that the kernel dropped its watch events.
    pub watch_overflows: usize,
}

#[derive(Debug)]
pub struct Report {
    text: String,
    failures: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn new(
        scenario: &Scenario,
        elapsed: Duration,
        faults: &FaultLog,
        proxy: &Counts,
        uploader_starts: u32,
        outcome: &Outcome,
    ) -> Report {
        let mut failures = outcome.problems.clone();
        let census = &outcome.census;
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };

        // Which missing numbers the budget explains: sent while a capture
        // that was dropped unsent was being written.
        let windows: Vec<(SystemTime, SystemTime)> = outcome
            .drops
            .iter()
            .filter_map(|d| capture_start(&d.file))
            .map(|start| {
                (
                    start - Duration::from_secs(1),
                    start + Duration::from_secs(settings::ROTATE_SECONDS + 2),
                )
            })
            .collect();
        let missing = census.missing();
        let by_budget = missing
            .iter()
            .filter(|&&n| {
                sent_at(&outcome.slices, n)
                    .is_some_and(|at| windows.iter().any(|(a, b)| (*a..=*b).contains(&at)))
            })
            .count() as u64;
        // Of the rest, those sent while tcpdump was stopped by the fault:
        // its kernel ring overflowed, the capture never saw them.
        let while_stopped = missing
            .iter()
            .filter(|&&n| {
                sent_at(&outcome.slices, n).is_some_and(|at| {
                    !windows.iter().any(|(a, b)| (*a..=*b).contains(&at))
                        && faults.stopped.iter().any(|(a, b)| (*a..=*b).contains(&at))
                })
            })
            .count() as u64;
        let counted: Vec<(usize, TcpdumpCounts)> = outcome
            .tcpdump
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.map(|c| (i, c)))
            .collect();
        let kernel_dropped: u64 = counted
            .iter()
            .map(|(_, c)| c.dropped_by_kernel)
            .sum::<u64>()
            + outcome.killed_kernel_drops;
        let unexplained = missing.len() as u64 - by_budget - while_stopped;
        let lost = unexplained.saturating_sub(kernel_dropped + outcome.send_errors);

        let runs = outcome.tcpdump.len();
        let captured: u64 = counted.iter().map(|(_, c)| c.captured).sum();
        let in_bucket_of_counted: u64 = counted
            .iter()
            .map(|(i, _)| census.records_per_run.get(*i).copied().unwrap_or(0))
            .sum();
        let mut run_mismatches = Vec::new();
        for (i, counts) in &counted {
            let held = census.records_per_run.get(*i).copied().unwrap_or(0);
            if held != counts.captured {
                run_mismatches.push(format!(
                    "run {}: tcpdump captured {}, the bucket holds {held}",
                    i + 1,
                    counts.captured
                ));
            }
        }

        // Synthetic captures are named in 2020–2022, real ones now.
        let synthetic_dropped: HashSet<&str> = outcome
            .drops
            .iter()
            .map(|d| d.file.as_str())
            .filter(|f| *f < "2023")
            .collect();

        let dropped_files = outcome.drops.len();
        let dropped_bytes: u64 = outcome.drops.iter().map(|d| d.bytes).sum();
        let launcher_drops = outcome.drops.iter().filter(|d| d.by == "launcher").count();

        line(format!(
            "chaos ledger: {} s ({} s of faults), seed {}, faults {}, {} datagrams/s (high rate {}/s for {} s)",
            elapsed.as_secs(),
            scenario.duration.as_secs(),
            scenario.seed,
            if scenario.faults.len() == FaultKind::all().len() {
                "mixed".to_owned()
            } else {
                scenario
                    .faults
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(",")
            },
            scenario.rate,
            scenario.high_rate,
            faults.high_rate_seconds
        ));
        line(format!(
            "datagrams: sent {}, in the bucket {} (once each: {}), missing {} = {} in captures the budget dropped + {} sent while tcpdump was stopped (its kernel ring full) + {} unexplained (tcpdump reported {} dropped by kernel; {} send errors)",
            outcome.sent,
            census.in_bucket(),
            census.in_bucket() - census.duplicated(),
            missing.len(),
            by_budget,
            while_stopped,
            unexplained,
            kernel_dropped,
            outcome.send_errors
        ));
        line(format!(
            "tcpdump: {} launcher runs, {} stopped cleanly with counts: captured {} records, the bucket holds {} of them (ticks in the bucket: {}); {} runs ended by SIGKILL (no counts)",
            runs,
            counted.len(),
            captured,
            in_bucket_of_counted,
            census.ticks,
            runs - counted.len()
        ));
        let injected: Vec<String> = faults
            .injected
            .iter()
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect();
        line(format!(
            "faults: {} (uploader SIGKILLs mid-multipart: {}; uploader starts: {}; stalls reported {}/{}; inotify queue overflows reported {})",
            if injected.is_empty() {
                "none".to_owned()
            } else {
                injected.join(", ")
            },
            faults.uploader_kills_mid_multipart,
            uploader_starts,
            faults.stalls_reported,
            faults
                .injected
                .get(&FaultKind::TcpdumpStop)
                .copied()
                .unwrap_or(0),
            outcome.watch_overflows,
        ));
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        line(format!(
            "proxy: {} requests; hung {}, reset mid-body {}, delayed {}, throttled {}, 503 SlowDown {}, byte flipped {}, garage unreachable {}",
            get(&proxy.requests),
            get(&proxy.hung),
            get(&proxy.reset),
            get(&proxy.delayed),
            get(&proxy.throttled),
            get(&proxy.slowed_down),
            get(&proxy.flipped),
            get(&proxy.upstream_unreachable)
        ));
        line(format!(
            "spool budget: dropped {dropped_files} captures, {dropped_bytes} bytes ({launcher_drops} by the launcher) in {} disk-full phases",
            faults.disk_full_phases
        ));
        line(format!(
            "bucket: {} captures ({} bytes in all objects), {} other objects; synthetic captures whole: {} of {}",
            census.capture_objects,
            census.bytes,
            census.other_objects,
            census.synthetic_found.len(),
            census.synthetic_expected,
        ));

        let duplicated = census.duplicated();
        let synthetic_missing = census
            .synthetic_expected
            .saturating_sub(census.synthetic_found.len() + synthetic_dropped.len());
        let open_uploads = census.open_multipart_uploads.len();
        line(format!(
            "result: lost {lost}, corrupt {}, damaged {}, duplicated {duplicated}, unknown numbers {}, synthetic missing {synthetic_missing}, leftover in the spool {}, open multipart uploads {open_uploads}",
            census.corrupt.len(),
            census.damaged.len(),
            census.unexpected_numbers,
            outcome.leftovers.len(),
        ));

        if lost > 0 {
            let sample: Vec<String> = missing.iter().take(10).map(u64::to_string).collect();
            failures.push(format!(
                "{lost} datagrams lost (first missing: {})",
                sample.join(", ")
            ));
        }
        for key in &census.corrupt {
            failures.push(format!(
                "corrupt: {key} does not match its metadata SHA-256"
            ));
        }
        for (key, why) in &census.damaged {
            failures.push(format!("damaged: {key}: {why}"));
        }
        if duplicated > 0 {
            failures.push(format!(
                "{duplicated} datagrams are in more than one record"
            ));
        }
        if census.unexpected_numbers > 0 {
            failures.push(format!(
                "{} records carry numbers never sent",
                census.unexpected_numbers
            ));
        }
        if synthetic_missing > 0 {
            failures.push(format!(
                "{synthetic_missing} synthetic captures are not in the bucket whole"
            ));
        }
        for left in outcome.leftovers.iter().take(10) {
            failures.push(format!("left in the spool: {left}"));
        }
        for upload in &census.open_multipart_uploads {
            failures.push(format!("multipart upload never completed: {upload}"));
        }
        if faults.injected.contains_key(&FaultKind::Burst) && outcome.watch_overflows == 0 {
            failures.push(
                "burst: the uploader never reported an inotify queue overflow (the burst did not test it)"
                    .to_owned(),
            );
        }
        if dropped_files > 0 && faults.disk_full_phases == 0 {
            failures.push(format!(
                "{dropped_files} captures dropped by the budget without a disk-full fault"
            ));
        }
        if dropped_files == 0 && faults.disk_full_phases > 0 {
            failures.push("disk-full ran but the budget dropped nothing".to_owned());
        }
        if by_budget == 0 {
            for mismatch in run_mismatches {
                failures.push(mismatch);
            }
        }
        if census.records_outside_runs > 0 {
            failures.push(format!(
                "{} records are stamped outside every launcher run",
                census.records_outside_runs
            ));
        }

        if failures.is_empty() {
            line("PASS: every invariant held".to_owned());
        } else {
            line(format!("FAIL: {} invariant(s) broken:", failures.len()));
            for failure in &failures {
                line(format!("  - {failure}"));
            }
        }
        Report {
            text: out,
            failures,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_drops_are_read_from_both_logs() {
        let log = format!(
            "{}\n{}",
            serde_json::json!({"message": spool::logging::counted::UPLOADER_BUDGET_DROPPED, "file": "20261127T142503Z.pcap", "bytes": 1000}),
            r#"{"message":"uploaded, verified and deleted","file":"20261127T142504Z.pcap"}"#
        );
        let drops = budget_drops(
            &log,
            spool::logging::counted::UPLOADER_BUDGET_DROPPED,
            "uploader",
        );
        assert_eq!(drops.len(), 1);
        assert_eq!(drops[0].file, "20261127T142503Z.pcap");
        assert_eq!(drops[0].bytes, 1000);
        let start = capture_start("20261127T142503Z-0001.pcap").unwrap();
        let secs = start
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(secs, 1_795_789_503);
    }

    /// The ledger finds these by `contains` on raw JSON lines: a wording
    /// that JSON escapes (a quote, a backslash) would never match.
    #[test]
    fn product_log_wording_the_ledger_matches_is_unchanged_by_json() {
        for wording in [
            spool::logging::counted::TCPDUMP_STALLED,
            spool::logging::counted::TCPDUMP_WRITING_AGAIN,
            spool::logging::counted::TCPDUMP_LISTENING,
            spool::logging::counted::UPLOADER_WATCH_OVERFLOW,
        ] {
            let line = serde_json::json!({ "message": wording }).to_string();
            assert!(line.contains(wording), "{wording:?} is escaped in {line}");
        }
    }
}
