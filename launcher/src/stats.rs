//! tcpdump's capture statistics, asked for with SIGUSR1 and read from its
//! stderr: packets captured (written), received by the filter, dropped by
//! the kernel (libpcap's `ps_drop`) and by the interface (`ps_ifdrop`).
//!
//! Why signalling tcpdump is harmless (tcpdump 4.99.3, Debian 12's, tag
//! `tcpdump-4.99.3` = 032e4923e5202ea4d5a6d1cead83ed1927135874, `tcpdump.c`):
//! - l. 176–177: `SIGNAL_REQ_INFO` is SIGUSR1 on Linux (no SIGINFO);
//!   l. 2471 installs `requestinfo` for it, before l. 2528 prints
//!   "listening on", so the launcher asks only once it has read that line
//!   (SIGUSR1's default action would kill tcpdump).
//! - l. 3118–3124 `requestinfo`: while a packet callback runs (`infodelay`
//!   non-zero, set around `pcap_dump` and `pcap_dump_flush` in
//!   `dump_packet_and_trunc` l. 2868/3071 and `dump_packet` l. 3083/3096,
//!   and around `-G`/`-C` rotation, which happens in that callback) it only
//!   sets `infoprint`; the callback prints once the packet is written
//!   (l. 3072–3073). Otherwise tcpdump is waiting in libpcap and the
//!   handler prints at once.
//! - l. 2764–2806 `info`: `pcap_stats` and `fprintf(stderr, …)` only; the
//!   capture file's stdio stream is never touched, so a record cannot be
//!   torn by the answer.
//! - The answer, `info(0)`, is one line: `tcpdump: N packets captured, N
//!   packets received by filter, N packets dropped by kernel[, N packets
//!   dropped by interface]` (the last only when not 0). At exit tcpdump
//!   prints `info(1)` (l. 2587, 2745): the same counters one a line,
//!   without the prefix. Both are read here; "packet" is singular for 1.
//!
//! tcpdump's counters are `u_int` (l. 286, `struct pcap_stat`): they wrap
//! at 2³² (12 h at 100,000 packets/s) and start at 0 with each tcpdump.
//! [`Accumulated`] turns successive reports into increments (modulo 2³²),
//! which the metrics add to counters that only grow.

/// One report of tcpdump's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    pub captured: u32,
    pub received: u32,
    pub dropped_by_kernel: u32,
    /// Only printed when not 0; `None` when the report did not say.
    pub dropped_by_interface: Option<u32>,
}

/// Which counter a `N packets …` phrase names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    Captured,
    Received,
    DroppedByKernel,
    DroppedByInterface,
}

/// Reads `N packet(s) <what>`.
fn phrase(text: &str) -> Option<(Counter, u32)> {
    let (count, rest) = text.trim().split_once(' ')?;
    let count = count.parse().ok()?;
    let what = rest
        .strip_prefix("packets ")
        .or_else(|| rest.strip_prefix("packet "))?;
    let counter = match what {
        "captured" => Counter::Captured,
        "received by filter" => Counter::Received,
        "dropped by kernel" => Counter::DroppedByKernel,
        "dropped by interface" => Counter::DroppedByInterface,
        _ => return None,
    };
    Some((counter, count))
}

/// Reads reports from tcpdump's stderr lines, in either form.
#[derive(Debug, Default)]
pub struct ReportReader {
    /// The one-a-line form seen so far (at exit).
    partial: Report,
}

impl ReportReader {
    /// Takes one line; returns a report when the line completes one. The
    /// one-a-line form completes at "dropped by kernel" and again at a
    /// following "dropped by interface" (with the same other counters).
    pub fn line(&mut self, line: &str) -> Option<Report> {
        if let Some(rest) = line.strip_prefix("tcpdump: ") {
            return one_line(rest);
        }
        let (counter, count) = phrase(line)?;
        match counter {
            Counter::Captured => {
                self.partial = Report {
                    captured: count,
                    ..Report::default()
                };
                None
            }
            Counter::Received => {
                self.partial.received = count;
                None
            }
            Counter::DroppedByKernel => {
                self.partial.dropped_by_kernel = count;
                Some(self.partial)
            }
            Counter::DroppedByInterface => {
                self.partial.dropped_by_interface = Some(count);
                Some(self.partial)
            }
        }
    }
}

/// `N packets captured, N packets received by filter, N packets dropped by
/// kernel[, N packets dropped by interface]`, the prefix removed.
fn one_line(text: &str) -> Option<Report> {
    let mut phrases = text.split(", ").map(phrase);
    let mut report = Report::default();
    for (expected, slot) in [
        (Counter::Captured, &mut report.captured),
        (Counter::Received, &mut report.received),
        (Counter::DroppedByKernel, &mut report.dropped_by_kernel),
    ] {
        match phrases.next()? {
            Some((counter, count)) if counter == expected => *slot = count,
            _ => return None,
        }
    }
    match phrases.next() {
        None => {}
        Some(Some((Counter::DroppedByInterface, count))) => {
            report.dropped_by_interface = Some(count);
        }
        Some(_) => return None,
    }
    phrases.next().is_none().then_some(report)
}

/// How much each counter grew since the report before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Increase {
    pub captured: u64,
    pub received: u64,
    pub dropped_by_kernel: u64,
    pub dropped_by_interface: u64,
}

/// The last report of the running tcpdump, from which the next one's
/// increase is measured.
#[derive(Debug, Default)]
pub struct Accumulated {
    last: Report,
}

impl Accumulated {
    /// The increase since the last report; a counter that wrapped at 2³²
    /// since then is still counted right (at most 2³² packets apart: 12 h
    /// at 100,000 a second, reports come every few seconds).
    pub fn observe(&mut self, report: Report) -> Increase {
        let grown = |now: u32, before: u32| u64::from(now.wrapping_sub(before));
        let interface = match report.dropped_by_interface {
            Some(now) => grown(now, self.last.dropped_by_interface.unwrap_or(0)),
            None => 0,
        };
        let increase = Increase {
            captured: grown(report.captured, self.last.captured),
            received: grown(report.received, self.last.received),
            dropped_by_kernel: grown(report.dropped_by_kernel, self.last.dropped_by_kernel),
            dropped_by_interface: interface,
        };
        self.last = Report {
            dropped_by_interface: report
                .dropped_by_interface
                .or(self.last.dropped_by_interface),
            ..report
        };
        increase
    }
}

/// What the reader of tcpdump's stderr shares with the capture loop: what
/// the answers said since the stall watch last looked, and the running
/// drop totals of this tcpdump with the time of the answer that gave them.
#[derive(Debug)]
pub struct Answers {
    heard: crate::stall::Heard,
    totals: Totals,
}

/// The drops counted by one tcpdump up to one of its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub dropped_by_kernel: u64,
    pub dropped_by_interface: u64,
    /// When the answer was read, Unix milliseconds.
    pub at_unix_ms: u64,
}

/// [`Answers`] behind a lock; both sides hold it for a few additions.
pub type SharedAnswers = std::sync::Arc<std::sync::Mutex<Answers>>;

impl Answers {
    /// Nothing heard yet from a tcpdump started now: its counters are 0.
    pub fn shared() -> SharedAnswers {
        std::sync::Arc::new(std::sync::Mutex::new(Answers {
            heard: crate::stall::Heard::default(),
            totals: Totals {
                dropped_by_kernel: 0,
                dropped_by_interface: 0,
                at_unix_ms: unix_ms_now(),
            },
        }))
    }

    /// One answer's increase, read now.
    pub fn add(&mut self, increase: Increase) {
        self.heard.add(increase);
        self.totals.dropped_by_kernel += increase.dropped_by_kernel;
        self.totals.dropped_by_interface += increase.dropped_by_interface;
        self.totals.at_unix_ms = unix_ms_now();
    }

    /// What was heard since the last call.
    pub fn take_heard(&mut self) -> crate::stall::Heard {
        std::mem::take(&mut self.heard)
    }
}

fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Gives each capture handed over the drops counted since the one before
/// (see [`spool::counters`] for what that interval is).
#[derive(Debug)]
pub struct DropLedger {
    answers: SharedAnswers,
    last: Totals,
}

impl DropLedger {
    /// Starts from the totals of the tcpdump just started (all 0).
    pub fn new(answers: SharedAnswers) -> Self {
        let last = Self::totals_of(&answers);
        Self { answers, last }
    }

    fn totals_of(answers: &SharedAnswers) -> Totals {
        match answers.lock() {
            Ok(answers) => answers.totals,
            Err(poisoned) => poisoned.into_inner().totals,
        }
    }

    /// The counts for the next capture handed over.
    pub fn next_capture(&mut self) -> spool::counters::CaptureCounters {
        let now = Self::totals_of(&self.answers);
        let counted = spool::counters::CaptureCounters {
            dropped_by_kernel: now.dropped_by_kernel - self.last.dropped_by_kernel,
            dropped_by_interface: now.dropped_by_interface - self.last.dropped_by_interface,
            from: self.last.at_unix_ms,
            to: now.at_unix_ms,
        };
        self.last = now;
        counted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_captures_get_consecutive_intervals_and_each_drop_once() {
        let answers = Answers::shared();
        let mut ledger = DropLedger::new(answers.clone());
        let drops = |kernel, interface| Increase {
            captured: 10,
            received: 10 + kernel,
            dropped_by_kernel: kernel,
            dropped_by_interface: interface,
        };
        answers.lock().unwrap().add(drops(3, 1));
        answers.lock().unwrap().add(drops(4, 0));
        let first = ledger.next_capture();
        // A second piece handed over with no answer since: nothing new.
        let second = ledger.next_capture();
        answers.lock().unwrap().add(drops(5, 2));
        let third = ledger.next_capture();
        assert_eq!(
            (first.dropped_by_kernel, first.dropped_by_interface),
            (7, 1)
        );
        assert_eq!(
            (second.dropped_by_kernel, second.dropped_by_interface),
            (0, 0)
        );
        assert_eq!(
            (third.dropped_by_kernel, third.dropped_by_interface),
            (5, 2)
        );
        assert_eq!(second.from, first.to);
        assert_eq!(third.from, second.to);
        assert!(first.from <= first.to && third.from <= third.to);
        assert_eq!(answers.lock().unwrap().take_heard().answers, 3);
        assert_eq!(answers.lock().unwrap().take_heard().answers, 0);
    }

    fn read(lines: &[&str]) -> Vec<Report> {
        let mut reader = ReportReader::default();
        lines.iter().filter_map(|l| reader.line(l)).collect()
    }

    #[test]
    fn reads_the_one_line_answer_to_sigusr1() {
        assert_eq!(
            read(&[
                "tcpdump: 12 packets captured, 15 packets received by filter, 3 packets dropped by kernel"
            ]),
            [Report {
                captured: 12,
                received: 15,
                dropped_by_kernel: 3,
                dropped_by_interface: None,
            }]
        );
    }

    #[test]
    fn reads_the_interface_drops_when_the_one_line_answer_has_them() {
        assert_eq!(
            read(&[
                "tcpdump: 1 packet captured, 1 packet received by filter, 0 packets dropped by kernel, 7 packets dropped by interface"
            ]),
            [Report {
                captured: 1,
                received: 1,
                dropped_by_kernel: 0,
                dropped_by_interface: Some(7),
            }]
        );
    }

    #[test]
    fn reads_the_one_counter_a_line_summary_at_exit() {
        let reports = read(&[
            "20 packets captured",
            "22 packets received by filter",
            "2 packets dropped by kernel",
        ]);
        assert_eq!(
            reports,
            [Report {
                captured: 20,
                received: 22,
                dropped_by_kernel: 2,
                dropped_by_interface: None,
            }]
        );
        let with_interface = read(&[
            "20 packets captured",
            "22 packets received by filter",
            "2 packets dropped by kernel",
            "5 packets dropped by interface",
        ]);
        assert_eq!(with_interface.last().unwrap().dropped_by_interface, Some(5));
    }

    #[test]
    fn other_lines_are_not_reports() {
        assert!(
            read(&[
                "tcpdump: listening on lo, link-type EN10MB (Ethernet), snapshot length 262144 bytes",
                "tcpdump: 12 packets captured, 15 packets received by filter",
                "tcpdump: 12 packets captured, 15 packets received by filter, 3 packets dropped by kernel, 1 packet eaten",
                "Got 12",
                "12 packets dropped by kernel and more",
            ])
            .is_empty()
        );
    }

    #[test]
    fn increases_add_up_to_the_last_report_of_a_tcpdump() {
        let mut accumulated = Accumulated::default();
        let first = accumulated.observe(Report {
            captured: 10,
            received: 12,
            dropped_by_kernel: 2,
            dropped_by_interface: None,
        });
        let second = accumulated.observe(Report {
            captured: 25,
            received: 30,
            dropped_by_kernel: 5,
            dropped_by_interface: Some(4),
        });
        // The exit summary leaves out interface drops that a later
        // answer had: no increase, and no fall either.
        let third = accumulated.observe(Report {
            captured: 25,
            received: 30,
            dropped_by_kernel: 5,
            dropped_by_interface: None,
        });
        assert_eq!(first.captured + second.captured + third.captured, 25);
        assert_eq!(first.received + second.received, 30);
        assert_eq!(first.dropped_by_kernel + second.dropped_by_kernel, 5);
        assert_eq!(second.dropped_by_interface, 4);
        assert_eq!(third, Increase::default());
    }

    #[test]
    fn a_counter_that_wrapped_at_two_to_the_32_still_counts_forward() {
        let mut accumulated = Accumulated::default();
        accumulated.observe(Report {
            captured: u32::MAX - 5,
            ..Report::default()
        });
        let after_wrap = accumulated.observe(Report {
            captured: 10,
            ..Report::default()
        });
        assert_eq!(after_wrap.captured, 16);
    }
}
