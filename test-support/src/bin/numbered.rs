//! Numbered UDP traffic for scripts (benchmarks, the pod test): send it,
//! count it back strictly from captures, and write capture-like files.
//! The same code as the Rust tests' (`test_support::numbered`), so every
//! harness counts the same way.
//!
//!   numbered send --port P --rate R --seconds S [--first N] [--sizes 64,512]
//!   numbered count --total N [--first F] FILE...
//!   numbered synthetic --dir DIR --bytes B [--count N] [--flows K] [--start UNIX_SECS]
//!   numbered many-flows --dir DIR --flows N [--shape udp|port-scan] [--seconds S] [--count C --step S]
//!   numbered journal --dir DIR --node NODE [--node-index I] [--pods K] [--pod NS/NAME=IP …] --start UNIX_SECS --count C [--period S]
//!
//! `send` and `count` print one JSON line.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spool::CaptureName;
use test_support::numbered::{read_sequence_numbers, send_paced};

#[derive(Debug, Parser)]
#[command(about = "Numbered UDP traffic: send, count back strictly, synthetic captures")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send numbered datagrams to 127.0.0.1:PORT at a steady rate.
    Send {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        seconds: u64,
        /// The first number sent.
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// UDP payload sizes used in turn (default: the number's own 21 bytes).
        #[arg(long, value_delimiter = ',')]
        sizes: Vec<usize>,
    },
    /// How many of FIRST..FIRST+TOTAL the captures hold, read strictly: a
    /// file that is not a whole pcap is listed as damaged.
    Count {
        #[arg(long)]
        total: u64,
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// Also list the missing numbers, as ranges (`first-last`).
        #[arg(long)]
        missing: bool,
        files: Vec<PathBuf>,
    },
    /// Write COUNT valid pcaps of TCP segments with random payloads into
    /// DIR, named as the launcher names ready captures, STEP seconds apart.
    Synthetic {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Size of each file in bytes (at least; it ends with a whole frame).
        #[arg(long)]
        bytes: u64,
        #[arg(long, default_value_t = 500)]
        flows: u32,
        /// Start of the first file, Unix seconds.
        #[arg(long, default_value_t = 1_796_000_000)]
        start: i64,
        #[arg(long, default_value_t = 60)]
        step: i64,
    },
    /// Write one valid pcap of FLOWS distinct flows into DIR, named as the
    /// launcher names ready captures: one UDP datagram each (`udp`), or
    /// SYNs to many ports, half answered by RST (`port-scan`).
    ManyFlows {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        flows: u64,
        #[arg(long, default_value = "udp")]
        shape: String,
        /// Capture time the flows are spread over.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value_t = 1_796_000_000)]
        start: i64,
        /// Files to write, STEP seconds apart (each of FLOWS flows).
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[arg(long, default_value_t = 60)]
        step: i64,
    },
    /// Write COUNT identity journal segments of NODE into DIR (a spool's
    /// journal/ folder), PERIOD seconds each, every one restating the same
    /// pods: each --pod NS/NAME=IP, and PODS filler pods
    /// `bench/filler-<I>-<j>` at 10.(100+I/256).(I%256).<j+1>.
    Journal {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        node: String,
        #[arg(long, default_value_t = 0)]
        node_index: u32,
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=254))]
        pods: u32,
        #[arg(long = "pod", value_name = "NS/NAME=IP")]
        named: Vec<String>,
        #[arg(long)]
        start: i64,
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[arg(long, default_value_t = 60)]
        period: i64,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("numbered: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Send {
            port,
            rate,
            seconds,
            first,
            sizes,
        } => {
            let sent = send_paced(port, first, rate * seconds, rate, &sizes);
            let achieved = sent.sent as f64 / sent.seconds.max(f64::EPSILON);
            println!(
                "{}",
                serde_json::json!({
                    "sent": sent.sent,
                    "send_errors": sent.send_errors,
                    "seconds": (sent.seconds * 100.0).round() / 100.0,
                    "rate": achieved.round(),
                })
            );
            Ok(())
        }
        Command::Count {
            total,
            first,
            missing,
            files,
        } => {
            count(total, first, missing, &files);
            Ok(())
        }
        Command::Synthetic {
            dir,
            count,
            bytes,
            flows,
            start,
            step,
        } => synthetic(&dir, count, bytes, flows, start, step),
        Command::ManyFlows {
            dir,
            flows,
            shape,
            seconds,
            start,
            count,
            step,
        } => (0..i64::from(count))
            .try_for_each(|i| many_flows(&dir, flows, &shape, seconds, start + i * step)),
        Command::Journal {
            dir,
            node,
            node_index,
            pods,
            named,
            start,
            count,
            period,
        } => journal(&dir, &node, node_index, pods, &named, start, count, period),
    }
}

/// `numbered journal`: see [`Command::Journal`].
#[allow(clippy::too_many_arguments)]
fn journal(
    dir: &std::path::Path,
    node: &str,
    node_index: u32,
    fillers: u32,
    named: &[String],
    start: i64,
    count: u32,
    period: i64,
) -> Result<(), String> {
    use test_support::journal_fixture::{pod, write_segments};
    let start = chrono::DateTime::from_timestamp(start, 0).ok_or("--start is out of range")?;
    let since = start - chrono::TimeDelta::hours(1);
    let mut pods = Vec::new();
    for spec in named {
        let parsed = spec.split_once('=').and_then(|(who, ip)| {
            let (ns, name) = who.split_once('/')?;
            Some((ns, name, ip.parse().ok()?))
        });
        let (ns, name, ip) = parsed.ok_or(format!("--pod {spec:?} is not NS/NAME=IPV4"))?;
        pods.push(pod(ns, name, ip, node, since));
    }
    let [_, _, hi, lo] = (100 * 256 + node_index).to_be_bytes();
    for j in 0..fillers {
        let ip = std::net::Ipv4Addr::new(10, hi, lo, (j + 1) as u8);
        pods.push(pod(
            "bench",
            &format!("filler-{node_index}-{j}"),
            ip,
            node,
            since,
        ));
    }
    write_segments(
        dir,
        node,
        &pods,
        start,
        count,
        chrono::TimeDelta::seconds(period),
    )
    .map(drop)
    .map_err(|e| format!("writing journal segments into {}: {e}", dir.display()))
}

fn count(total: u64, first: u64, list_missing: bool, files: &[PathBuf]) {
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    let mut damaged = Vec::new();
    for file in files {
        match read_sequence_numbers(file) {
            Ok(numbers) => {
                for n in numbers {
                    *seen.entry(n).or_default() += 1;
                }
            }
            Err(e) => damaged.push(e),
        }
    }
    let wanted = first..first + total;
    let captured = seen.keys().filter(|n| wanted.contains(n)).count() as u64;
    let duplicates: u64 = seen.values().map(|c| c - 1).sum();
    let lost = total - captured;
    let loss_pct = if total == 0 {
        0.0
    } else {
        (10_000.0 * lost as f64 / total as f64).round() / 100.0
    };
    let mut report = serde_json::json!({
        "sent": total,
        "captured": captured,
        "lost": lost,
        "loss_pct": loss_pct,
        "duplicates": duplicates,
        "files": files.len(),
        "damaged": damaged,
    });
    if list_missing {
        report["missing"] = missing_ranges(wanted.filter(|n| !seen.contains_key(n))).into();
    }
    println!("{report}");
}

/// `first-last` for each run of consecutive numbers.
fn missing_ranges(numbers: impl Iterator<Item = u64>) -> Vec<String> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for n in numbers {
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 == n => *last = n,
            _ => ranges.push((n, n)),
        }
    }
    ranges
        .into_iter()
        .map(|(a, b)| format!("{a}-{b}"))
        .collect()
}

fn synthetic(
    dir: &std::path::Path,
    count: u32,
    bytes: u64,
    flows: u32,
    start: i64,
    step: i64,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for i in 0..i64::from(count) {
        let at = start + i * step;
        let started =
            chrono::DateTime::from_timestamp(at, 0).ok_or_else(|| format!("{at} is not a time"))?;
        let out = dir.join(CaptureName::new(started, 0).ready_file_name());
        let file = std::fs::File::create(&out)
            .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
        let writer = std::io::BufWriter::with_capacity(1 << 20, file);
        test_support::synthetic::write_capture(writer, bytes, flows, at.unsigned_abs())
            .map_err(|e| format!("writing {}: {e}", out.display()))?;
    }
    Ok(())
}

fn many_flows(
    dir: &std::path::Path,
    flows: u64,
    shape: &str,
    seconds: u64,
    start: i64,
) -> Result<(), String> {
    let shape = test_support::synthetic::FlowShape::parse(shape)
        .ok_or_else(|| format!("--shape {shape:?}: use udp or port-scan"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let started = chrono::DateTime::from_timestamp(start, 0)
        .ok_or_else(|| format!("{start} is not a time"))?;
    let out = dir.join(CaptureName::new(started, 0).ready_file_name());
    let file =
        std::fs::File::create(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let packets = test_support::synthetic::write_many_flows(
        writer,
        flows,
        shape,
        start.unsigned_abs(),
        seconds,
    )
    .map_err(|e| format!("writing {}: {e}", out.display()))?;
    println!(
        "{}",
        serde_json::json!({"file": out, "flows": flows, "packets": packets})
    );
    Ok(())
}
