//! `captures` against what any node's role can write to the bucket (issue
//! 20, items 3 and 4): keys and index records carrying terminal escape
//! sequences or overflowing counters, two keys with one file name, merges
//! of more captures than the open-file limit, and windows without bounds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use aws_sdk_s3::primitives::ByteStream;
use bucket::capture_keys::{DEFAULT_TEMPLATE, KeyContext, KeyTemplate};
use bucket::object_metadata::ObjectMetadata;
use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};
use etherparse::PacketBuilder;
use flows::FlowRecord;
use futures::StreamExt as _;
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use spool::CaptureName;
use test_support::Garage;

/// `captures ARGS…` (behind `wrapper` when given, e.g. prlimit) with a
/// garage's settings and a clean AWS environment.
fn captures(garage: &Garage, wrapper: &[&str], args: &[&str]) -> Command {
    let binary = assert_cmd::cargo::cargo_bin("captures");
    let mut cmd = match wrapper.split_first() {
        Some((program, wrapper_args)) => {
            let mut cmd = garage.s3_client(program);
            cmd.args(wrapper_args).arg(binary);
            cmd
        }
        None => garage.s3_client(binary),
    };
    cmd.args(args);
    Command::from_std(cmd)
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn stdout_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

fn stderr_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// A pcap of one UDP packet 10.0.0.1:`port` -> 10.0.0.2:53 per time.
fn pcap(packets: &[(DateTime<Utc>, u16)]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    for (at, port) in packets {
        let mut data = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(*port, 53)
            .write(&mut data, b"hello")
            .unwrap();
        let ts = Duration::new(
            u64::try_from(at.timestamp()).unwrap(),
            at.timestamp_subsec_nanos(),
        );
        w.write_packet(&PcapPacket::new(
            ts,
            u32::try_from(data.len()).unwrap(),
            &data,
        ))
        .unwrap();
    }
    w.into_writer()
}

/// The source ports of a pcap's packets, in file order.
fn ports(path: &Path) -> Vec<u16> {
    let mut reader = PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut ports = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap();
        let sliced = etherparse::SlicedPacket::from_ethernet(&packet.data).unwrap();
        match sliced.transport {
            Some(etherparse::TransportSlice::Udp(udp)) => ports.push(udp.source_port()),
            other => panic!("not UDP: {other:?}"),
        }
    }
    ports
}

/// The default layout's key of a capture of `node` started at `start`,
/// with `folder/` put before the file name when given.
fn capture_key(node: &str, start: DateTime<Utc>, folder: Option<&str>) -> String {
    let template = KeyTemplate::parse(DEFAULT_TEMPLATE).unwrap();
    let ctx = KeyContext {
        node: node.to_owned(),
        ..KeyContext::default()
    };
    let key = template.render(&ctx, &CaptureName::new(start, 0));
    match folder {
        Some(folder) => {
            let (dir, file) = key.rsplit_once('/').unwrap();
            format!("{dir}/{folder}/{file}")
        }
        None => key,
    }
}

/// Puts `bytes` at `key` with the metadata the uploader writes (its true
/// SHA-256).
async fn put(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    node: &str,
    start: DateTime<Utc>,
    bytes: Vec<u8>,
) {
    let summary = spool::pcap::check_reader(bytes.as_slice()).unwrap();
    let sha = test_support::fixtures::sha256_hex(&bytes);
    let metadata = ObjectMetadata::for_capture(&sha, start, node, &summary).to_headers();
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .set_metadata(Some(metadata))
        .body(ByteStream::from(bytes))
        .send()
        .await
        .unwrap();
}

/// An index object holding `records`, as the uploader writes it.
fn index_object(records: &[FlowRecord]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for r in records {
        serde_json::to_writer(&mut gz, r).unwrap();
        gz.write_all(b"\n").unwrap();
    }
    gz.finish().unwrap()
}

fn base() -> DateTime<Utc> {
    (Utc::now() - TimeDelta::hours(2)).trunc_subsecs(0)
}

/// A key, a node name and an index record's `capture` and `proto` carrying
/// terminal escape sequences, and counters near `u64::MAX`.
#[test]
fn keys_and_index_fields_with_escape_sequences_print_escaped_and_huge_counters_are_floors() {
    let test =
        "keys_and_index_fields_with_escape_sequences_print_escaped_and_huge_counters_are_floors";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let start = base();
    // The key's folder carries CSI as one 8-bit control (U+009B), which an
    // S3 listing (XML) can hold; the index record, being JSON, carries ESC.
    let key = capture_key("node-a", start, Some("\u{9b}2J"));
    let hostile = "\u{1b}[2J\u{1b}]0;owned\u{7}";
    let record = FlowRecord {
        capture: format!("{key}{hostile}"),
        proto: format!("udp{hostile}"),
        src: "10.0.0.1".parse().unwrap(),
        sport: 4000,
        dst: "10.0.0.2".parse().unwrap(),
        dport: 53,
        first: start + TimeDelta::seconds(1),
        last: start + TimeDelta::seconds(2),
        packets_src: 1,
        bytes_src: 1,
        packets_dst: 0,
        bytes_dst: 0,
        resets_src: u64::MAX,
        resets_dst: 1,
        resets_in_handshake: 0,
        syn_unanswered: 0,
        retransmissions: u64::MAX,
        dup_acks: u64::MAX,
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
        partial: false,
    };
    runtime().block_on(async {
        let client = garage.client().await;
        let bytes = pcap(&[(start + TimeDelta::seconds(1), 4000)]);
        put(&client, garage.bucket(), &key, "node-a", start, bytes).await;
        let file = key.rsplit('/').next().unwrap();
        let index_key = bucket::index_keys::index_key("tcp-dumps/", "node-a", start, file);
        client
            .put_object()
            .bucket(garage.bucket())
            .key(index_key)
            .body(ByteStream::from(index_object(std::slice::from_ref(
                &record,
            ))))
            .send()
            .await
            .unwrap();
    });
    let from = rfc(start - TimeDelta::seconds(30));
    let to = rfc(start + TimeDelta::seconds(90));

    let out = captures(&garage, &[], &["list", "--from", &from, "--to", &to])
        .assert()
        .success();
    let listed = stdout_of(&out);
    assert!(
        !listed.contains('\u{9b}'),
        "a raw CSI was printed: {listed:?}"
    );
    let file = key.rsplit('/').next().unwrap();
    assert!(listed.contains(&format!(r"/\u{{9b}}2J/{file}")), "{listed}");

    // --symptom reset: u64::MAX + 1 resets wrap to 0 in a release build (the
    // flow is hidden) and panic in a debug one; saturated, it is found.
    let out = captures(
        &garage,
        &[],
        &["find", "--from", &from, "--to", &to, "--symptom", "reset"],
    )
    .assert()
    .success();
    let found = stdout_of(&out);
    assert!(
        !found.contains('\u{1b}') && !found.contains('\u{7}'),
        "raw escapes printed: {found:?}"
    );
    assert!(
        found.contains(r"udp\u{1b}[2J\u{1b}]0;owned\u{7} 10.0.0.1:4000 -> 10.0.0.2:53"),
        "{found}"
    );
    assert!(
        found.contains(&format!(r"/\u{{9b}}2J/{file}\u{{1b}}[2J")),
        "{found}"
    );
    assert!(
        found.contains("reset ×≥18446744073709551615")
            && found.contains("retransmission ×≥18446744073709551615"),
        "{found}"
    );
    // JSON keeps the values (serde escapes them) and the saturated counts.
    let out = captures(
        &garage,
        &[],
        &[
            "find", "--from", &from, "--to", &to, "--host", "10.0.0.1", "--json",
        ],
    )
    .assert()
    .success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["flows"][0]["proto"], record.proto);
    assert_eq!(json["flows"][0]["resets_src"], u64::MAX);
}

#[test]
fn explain_text_shows_saturated_counts_and_escaped_fields_without_panicking() {
    let record: FlowRecord = serde_json::from_value(serde_json::json!({
        "capture": "k\u{1b}[2J", "proto": "tcp\u{1b}[31m",
        "src": "10.0.0.1", "sport": 1, "dst": "10.0.0.2", "dport": 2,
        "first": "2026-11-27T14:00:00Z", "last": "2026-11-27T14:00:01Z",
        "packets_src": 1, "bytes_src": 1, "packets_dst": 1, "bytes_dst": 1,
        "resets_src": u64::MAX, "resets_dst": u64::MAX, "resets_in_handshake": 0,
        "syn_unanswered": u64::MAX, "retransmissions": u64::MAX, "dup_acks": 1,
        "zero_windows": 0, "dns_unanswered": u64::MAX, "dns_nxdomain": 0,
        "dns_servfail": 0, "dns_slow": 0, "icmp_unreachable": 0,
        "icmp_frag_needed": 0, "handshake_us": null, "dns_slowest_us": null,
        "first_symptom": null
    }))
    .unwrap();
    assert_eq!(record.severity(), u64::MAX);
    assert_eq!(record.count(flows::Symptom::Timeout), u64::MAX);
    let described = captures::explain::describe(&record).join(", ");
    assert!(
        described.contains("reset sent by 10.0.0.1 (opener) ×≥18446744073709551615"),
        "{described}"
    );
}

/// Two keys of one node with one file name under different folders (which
/// the uploader never writes, but any node's role can): before, both went
/// to `<node>/<file>`, the last write won, and the merge held one capture
/// twice and the other not at all.
#[test]
fn two_keys_with_one_file_name_are_fetched_to_distinct_files_and_merged_once_each() {
    let test = "two_keys_with_one_file_name_are_fetched_to_distinct_files_and_merged_once_each";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let start = base();
    let s = |secs: i64| start + TimeDelta::seconds(secs);
    let a = capture_key("node-a", start, Some("a"));
    let b = capture_key("node-a", start, Some("b"));
    let (a_bytes, b_bytes) = (
        pcap(&[(s(1), 1001), (s(3), 1003)]),
        pcap(&[(s(2), 2002), (s(4), 2004)]),
    );
    runtime().block_on(async {
        let client = garage.client().await;
        put(
            &client,
            garage.bucket(),
            &a,
            "node-a",
            start,
            a_bytes.clone(),
        )
        .await;
        put(
            &client,
            garage.bucket(),
            &b,
            "node-a",
            start,
            b_bytes.clone(),
        )
        .await;
    });
    let dir = tempfile::tempdir().unwrap();
    let (out_dir, merged) = (dir.path().join("out"), dir.path().join("merged.pcap"));
    let (from, to) = (rfc(s(-30)), rfc(s(60)));
    let out = captures(
        &garage,
        &[],
        &[
            "fetch",
            "--from",
            &from,
            "--to",
            &to,
            // The same node twice lists its captures once.
            "--node",
            "node-a",
            "--node",
            "node-a",
            "--out",
            out_dir.to_str().unwrap(),
            "--merge",
            merged.to_str().unwrap(),
        ],
    )
    .assert()
    .success();
    let printed: Vec<PathBuf> = stdout_of(&out)
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.starts_with(&out_dir))
        .collect();
    assert_eq!(printed.len(), 2, "{}", stdout_of(&out));
    assert_ne!(printed[0], printed[1]);
    let mut contents = BTreeMap::new();
    for path in &printed {
        assert!(path.starts_with(out_dir.join("node-a")), "{path:?}");
        contents.insert(std::fs::read(path).unwrap(), path.clone());
    }
    assert!(
        contents.contains_key(&a_bytes) && contents.contains_key(&b_bytes),
        "{printed:?}"
    );
    assert_eq!(ports(&merged), [1001, 2002, 1003, 2004]);
}

/// Captures of four nodes over 50 minutes, `count` in all, each with two
/// packets whose source ports no other packet has; returns every port.
fn many_captures(garage: &Garage, count: usize, start: DateTime<Utc>) -> Vec<u16> {
    let mut all = Vec::new();
    runtime().block_on(async {
        let client = garage.client().await;
        let mut puts = Vec::new();
        for i in 0..count {
            let node = format!("node-{}", i % 4);
            let at = start + TimeDelta::seconds(60 * i64::try_from(i / 4).unwrap());
            let port = |k: usize| u16::try_from(10_000 + 2 * i + k).unwrap();
            all.extend([port(0), port(1)]);
            let bytes = pcap(&[
                (at + TimeDelta::seconds(1), port(0)),
                (at + TimeDelta::seconds(30), port(1)),
            ]);
            let key = capture_key(&node, at, None);
            let client = client.clone();
            let bucket = garage.bucket().to_owned();
            puts.push(async move { put(&client, &bucket, &key, &node, at, bytes).await });
        }
        futures::stream::iter(puts)
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
    });
    all.sort_unstable();
    all
}

const NODES: [&str; 8] = [
    "--node", "node-0", "--node", "node-1", "--node", "node-2", "--node", "node-3",
];

/// Before, a merge opened every input at once: more captures than the
/// open-file limit failed with "too many open files" (and the downloads
/// were deleted).
#[test]
fn a_merge_of_200_captures_under_a_64_file_limit_holds_every_packet_once() {
    let test = "a_merge_of_200_captures_under_a_64_file_limit_holds_every_packet_once";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let start = base();
    let expected = many_captures(&garage, 200, start);
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged.pcap");
    let (from, to) = (
        rfc(start - TimeDelta::seconds(30)),
        rfc(start + TimeDelta::minutes(55)),
    );
    let mut args = vec![
        "fetch",
        "--from",
        &from,
        "--to",
        &to,
        "--merge",
        merged.to_str().unwrap(),
    ];
    args.extend(NODES);
    // Soft and hard: the limit cannot be raised.
    let out = captures(&garage, &["prlimit", "--nofile=64:64"], &args).assert();
    let stderr = stderr_of(&out);
    let out = out.success();
    assert!(
        stdout_of(&out).contains("400 packets"),
        "{}{stderr}",
        stdout_of(&out)
    );
    let mut got = ports(&merged);
    got.sort_unstable();
    assert_eq!(got, expected, "each packet once");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(
        left.len(),
        1,
        "the downloads are removed after a merge that succeeded: {left:?}"
    );
}

/// A merge that fails (here: an object that is not a pcap, with a true
/// SHA-256) keeps the verified downloads and says where they are.
#[test]
fn a_failed_merge_keeps_the_downloads_and_names_their_folder() {
    let test = "a_failed_merge_keeps_the_downloads_and_names_their_folder";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let start = base();
    many_captures(&garage, 4, start);
    let not_pcap = capture_key("node-0", start + TimeDelta::seconds(60), None);
    runtime().block_on(async {
        let client = garage.client().await;
        let bytes = b"this is not a pcap".to_vec();
        put(
            &client,
            garage.bucket(),
            &not_pcap,
            "node-0",
            start + TimeDelta::seconds(60),
            bytes,
        )
        .await;
    });
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged.pcap");
    let (from, to) = (
        rfc(start - TimeDelta::seconds(30)),
        rfc(start + TimeDelta::minutes(3)),
    );
    let mut args = vec![
        "fetch",
        "--from",
        &from,
        "--to",
        &to,
        "--merge",
        merged.to_str().unwrap(),
    ];
    args.extend(NODES);
    let out = captures(&garage, &[], &args).assert().failure();
    let stderr = stderr_of(&out);
    let (_, kept) = stderr
        .split_once("the 5 verified downloads are kept in ")
        .unwrap_or_else(|| panic!("{stderr}"));
    let kept = PathBuf::from(kept.split(':').next().unwrap());
    assert!(stderr.contains("is not a pcap file"), "{stderr}");
    let files: Vec<PathBuf> = walk(&kept);
    assert_eq!(files.len(), 5, "{files:?}");
    assert!(!merged.exists());
}

/// Captures that all overlap in time must all be open at once: past the
/// limit, the merge says how many were open and what to do, and the
/// downloads are kept.
#[test]
fn a_merge_of_more_overlapping_captures_than_the_file_limit_says_so_and_keeps_the_downloads() {
    let test =
        "a_merge_of_more_overlapping_captures_than_the_file_limit_says_so_and_keeps_the_downloads";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let start = base();
    runtime().block_on(async {
        let client = garage.client().await;
        for i in 0..80u16 {
            let key = capture_key("node-a", start, Some(&format!("f{i}")));
            let bytes = pcap(&[
                (start + TimeDelta::seconds(1), 10_000 + i),
                (start + TimeDelta::seconds(30), 20_000 + i),
            ]);
            put(&client, garage.bucket(), &key, "node-a", start, bytes).await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged.pcap");
    let (from, to) = (
        rfc(start - TimeDelta::seconds(30)),
        rfc(start + TimeDelta::minutes(2)),
    );
    let out = captures(
        &garage,
        &["prlimit", "--nofile=64:64"],
        &[
            "fetch",
            "--from",
            &from,
            "--to",
            &to,
            "--node",
            "node-a",
            "--merge",
            merged.to_str().unwrap(),
        ],
    )
    .assert()
    .failure();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("other captures that overlap it in time are open")
            && stderr.contains("raise the open-file limit (ulimit -n)"),
        "{stderr}"
    );
    let (_, kept) = stderr
        .split_once("the 80 verified downloads are kept in ")
        .unwrap_or_else(|| panic!("{stderr}"));
    let kept = PathBuf::from(kept.split(':').next().unwrap());
    assert_eq!(walk(&kept).len(), 80);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// `captures list ARGS…` against a bucket that is never reached: every
/// window refusal comes before any request.
fn list_refusal(args: &[&str]) -> String {
    let out = Command::cargo_bin("captures")
        .unwrap()
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "unused")
        .env("AWS_SECRET_ACCESS_KEY", "unused")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("S3_ENDPOINT_URL", "http://127.0.0.1:9")
        .args(["list", "--bucket", "b"])
        .args(args)
        .assert()
        .code(1);
    stderr_of(&out)
}

#[test]
fn windows_before_2000_after_tomorrow_or_longer_than_the_limit_are_refused_naming_the_flag() {
    let e = list_refusal(&["--from", "0001-01-01T00:00:00Z"]);
    assert!(
        e.contains("--from 0001-01-01T00:00:00Z is before 2000-01-01T00:00:00Z"),
        "{e}"
    );
    let e = list_refusal(&["--from", "-1h", "--to", "2999-01-01T00:00:00Z"]);
    assert!(
        e.contains("--to 2999-01-01T00:00:00Z is more than a day after now"),
        "{e}"
    );
    let e = list_refusal(&["--from", "-32d"]);
    assert!(e.contains("more than --max-window-hours 744"), "{e}");
    let e = list_refusal(&["--from", "-3h", "--max-window-hours", "2"]);
    assert!(
        e.contains("is 3 hours long, more than --max-window-hours 2"),
        "{e}"
    );
    // Near chrono's minimum: refused, not a panic (exit code 1, not 101).
    let e = list_refusal(&["--from", "-96465000d"]);
    assert!(e.contains("is before 2000"), "{e}");
    let out = Command::cargo_bin("captures")
        .unwrap()
        .args([
            "list",
            "--bucket",
            "b",
            "--from",
            "-1h",
            "--rotate-seconds",
            "4294967295",
        ])
        .assert()
        .code(2);
    let e = stderr_of(&out);
    assert!(
        e.contains("--rotate-seconds") && e.contains("0..=86400"),
        "{e}"
    );
}
