//! `captures explain FILE…`: the symptoms in local captures, worst first.
//!
//! Each file is streamed once through [`spool::pcap::PcapCheck`] into a
//! [`flows::FlowTable`]; only flows with a symptom (and the handshake times,
//! for percentiles) are kept, so memory follows the live and the failing
//! flows, not the file size.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use flows::{FlowRecord, FlowTable};
use serde::Serialize;
use spool::pcap::{DamageKind, PcapCheck};

const BUFFER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a pcap file ({detail}); give a file written by tcpdump -w (pcapng is not read)"
    )]
    NotPcap { path: PathBuf, detail: String },
}

/// What one file held.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    pub packets: u64,
    pub link_type: Option<u32>,
    /// Records without an IP packet (ARP, an unsupported link type).
    pub not_ip: u64,
    pub flows: u64,
    /// Where reading stopped and why, for a damaged or torn file.
    pub damage: Option<String>,
}

/// Connection set-up times (SYN to SYN/ACK) over every flow that had one.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Handshakes {
    pub connections: usize,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Totals of each symptom over all files.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    pub resets: u64,
    pub resets_in_handshake: u64,
    pub syn_unanswered: u64,
    pub retransmissions: u64,
    pub zero_windows: u64,
    pub dns_unanswered: u64,
    pub dns_nxdomain: u64,
    pub dns_servfail: u64,
    pub icmp_unreachable: u64,
    pub icmp_frag_needed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub files: Vec<FileReport>,
    pub totals: Totals,
    pub handshakes: Option<Handshakes>,
    /// Flows with at least one symptom, worst first.
    pub flows: Vec<FlowRecord>,
}

/// Reads `paths` and reports their symptoms.
pub fn explain(paths: &[PathBuf]) -> Result<Report, ExplainError> {
    let mut files = Vec::new();
    let mut failing = Vec::new();
    let mut handshakes = Vec::new();
    for path in paths {
        files.push(read_file(path, &mut failing, &mut handshakes)?);
    }
    let mut totals = Totals::default();
    for f in &failing {
        totals.resets += f.resets_src + f.resets_dst;
        totals.resets_in_handshake += f.resets_in_handshake;
        totals.syn_unanswered += f.syn_unanswered;
        totals.retransmissions += f.retransmissions;
        totals.zero_windows += f.zero_windows;
        totals.dns_unanswered += f.dns_unanswered;
        totals.dns_nxdomain += f.dns_nxdomain;
        totals.dns_servfail += f.dns_servfail;
        totals.icmp_unreachable += f.icmp_unreachable;
        totals.icmp_frag_needed += f.icmp_frag_needed;
    }
    failing.sort_by(|a, b| {
        b.severity()
            .cmp(&a.severity())
            .then(a.first_symptom.cmp(&b.first_symptom))
    });
    Ok(Report {
        files,
        totals,
        handshakes: percentiles(&mut handshakes),
        flows: failing,
    })
}

fn read_file(
    path: &Path,
    failing: &mut Vec<FlowRecord>,
    handshakes: &mut Vec<u64>,
) -> Result<FileReport, ExplainError> {
    let read_error = |source| ExplainError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let mut check = PcapCheck::new();
    let mut table = FlowTable::new(path.display().to_string());
    let mut keep = |record: FlowRecord| {
        if let Some(us) = record.handshake_us {
            handshakes.push(us);
        }
        if record.severity() > 0 {
            failing.push(record);
        }
    };
    let mut buffer = vec![0u8; BUFFER];
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        check.feed_with(&buffer[..n], |record| table.add(record));
        table.drain().for_each(&mut keep);
        if check.is_damaged() {
            break;
        }
    }
    let summary = check.finish();
    if let Some(damage) = summary.damage
        && matches!(damage.kind, DamageKind::NotPcap | DamageKind::NoHeader)
    {
        return Err(ExplainError::NotPcap {
            path: path.to_owned(),
            detail: damage.to_string(),
        });
    }
    let (rest, stats) = table.finish();
    rest.into_iter().for_each(&mut keep);
    Ok(FileReport {
        path: path.to_owned(),
        packets: summary.packets,
        link_type: summary.link_type,
        not_ip: stats.not_ip,
        flows: stats.flows,
        damage: summary.damage.map(|d| {
            format!(
                "read {} whole packets ({} bytes), then stopped: {d}",
                summary.packets, summary.whole_bytes
            )
        }),
    })
}

fn percentiles(values: &mut [u64]) -> Option<Handshakes> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let at = |q: usize| values[((values.len() - 1) * q) / 100];
    Some(Handshakes {
        connections: values.len(),
        p50_us: at(50),
        p90_us: at(90),
        p99_us: at(99),
        max_us: values[values.len() - 1],
    })
}

/// What went wrong in one flow, in words, each with its count.
pub fn describe(f: &FlowRecord) -> Vec<String> {
    let mut out = Vec::new();
    let mut say = |n: u64, what: String| {
        if n > 0 {
            out.push(format!("{what} ×{n}"));
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
    let later = (f.resets_src + f.resets_dst).saturating_sub(f.resets_in_handshake);
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
    say(f.zero_windows, "zero window".to_owned());
    say(f.retransmissions, "retransmission".to_owned());
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
    use std::fmt::Write as _;
    let mut s = String::new();
    for f in &report.files {
        let _ = writeln!(
            s,
            "{}: {} packets, {} flows, link type {}{}",
            f.path.display(),
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
                f.proto,
                endpoint(f.src, f.sport),
                endpoint(f.dst, f.dport),
                describe(f).join(", ")
            );
        }
    }
    let t = &report.totals;
    let _ = writeln!(
        s,
        "\ntotals: {} resets ({} in the handshake), {} unanswered SYNs, {} retransmissions, {} zero windows, {} unanswered DNS queries, {} NXDOMAIN, {} SERVFAIL, {} ICMP unreachable, {} fragmentation needed",
        t.resets,
        t.resets_in_handshake,
        t.syn_unanswered,
        t.retransmissions,
        t.zero_windows,
        t.dns_unanswered,
        t.dns_nxdomain,
        t.dns_servfail,
        t.icmp_unreachable,
        t.icmp_frag_needed
    );
    if let Some(h) = report.handshakes {
        let ms = |us: u64| us as f64 / 1000.0;
        let _ = writeln!(
            s,
            "handshakes: {} connections, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            h.connections,
            ms(h.p50_us),
            ms(h.p90_us),
            ms(h.p99_us),
            ms(h.max_us)
        );
    }
    s
}
