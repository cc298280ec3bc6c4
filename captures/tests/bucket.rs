//! `captures list`, `find` and `fetch` against a real garage: captures put
//! with the uploader's key layout, metadata and flow index (built by the
//! same `flows` code the uploader runs), then read back by the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use test_support::{Garage, prerequisites, traffic};

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Duration;

use assert_cmd::Command;
use aws_sdk_s3::primitives::ByteStream;
use bucket::capture_keys::{DEFAULT_TEMPLATE, KeyContext, KeyTemplate};
use bucket::object_metadata::ObjectMetadata;
use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};
use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use serde_json::Value;
use spool::CaptureName;

/// `captures ARGS…` with a garage's settings and a clean AWS environment.
trait CapturesCli {
    fn captures(&self, args: &[&str]) -> Command;

    /// `captures VERB --from FROM --to TO ARGS…`.
    fn captures_over(&self, verb: &str, from: &str, to: &str, args: &[&str]) -> Command {
        let mut cmd = self.captures(&[verb, "--from", from, "--to", to]);
        cmd.args(args);
        cmd
    }
}

impl CapturesCli for Garage {
    fn captures(&self, args: &[&str]) -> Command {
        let mut cmd = self.s3_client(assert_cmd::cargo::cargo_bin("captures"));
        cmd.args(args);
        Command::from_std(cmd)
    }
}

/// What a finished command printed on stdout, as text.
fn stdout_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

/// What a finished command printed on stderr, as text.
fn stderr_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

/// One TCP or UDP packet on Ethernet at `at`.
struct Pkt {
    at: DateTime<Utc>,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    /// TCP flags: "S" SYN, "R" RST+ACK; None for UDP.
    tcp: Option<&'static str>,
}

fn frame(p: &Pkt) -> Vec<u8> {
    let b =
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(p.src.0, p.dst.0, 64);
    let mut out = Vec::new();
    match p.tcp {
        Some("S") => b
            .tcp(p.src.1, p.dst.1, 1000, 64240)
            .syn()
            .write(&mut out, &[])
            .unwrap(),
        Some(_) => b
            .tcp(p.src.1, p.dst.1, 0, 0)
            .rst()
            .ack(1001)
            .write(&mut out, &[])
            .unwrap(),
        None => b.udp(p.src.1, p.dst.1).write(&mut out, b"hello").unwrap(),
    }
    out
}

fn pcap(packets: &[Pkt]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    for p in packets {
        let data = frame(p);
        let ts = Duration::new(
            u64::try_from(p.at.timestamp()).unwrap(),
            p.at.timestamp_subsec_nanos(),
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

struct Put {
    key: String,
    bytes: Vec<u8>,
}

/// Puts a capture as the uploader does: default key layout, metadata, and
/// its flow index next to it. `sha256` overrides the checksum metadata.
async fn put_capture(
    garage: &Garage,
    node: &str,
    start: DateTime<Utc>,
    bytes: Vec<u8>,
    sha256: Option<&str>,
) -> Put {
    put_capture_with_drops(garage, node, start, bytes, sha256, None).await
}

/// [`put_capture`], with the drop counts the launcher recorded for it.
async fn put_capture_with_drops(
    garage: &Garage,
    node: &str,
    start: DateTime<Utc>,
    bytes: Vec<u8>,
    sha256: Option<&str>,
    drops: Option<bucket::object_metadata::Drops>,
) -> Put {
    let template = KeyTemplate::parse(DEFAULT_TEMPLATE).unwrap();
    let name = CaptureName::new(start, 0);
    let ctx = KeyContext {
        node: node.to_owned(),
        ..KeyContext::default()
    };
    let key = template.render(&ctx, &name);
    let mut indexing = flows::IndexingCheck::new(key.clone(), Vec::new());
    indexing.feed(&bytes);
    let (summary, index) = indexing.finish();
    let (gz, _) = index.unwrap();
    let real_sha = {
        use sha2::Digest as _;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let mut metadata =
        ObjectMetadata::for_capture(sha256.unwrap_or(&real_sha), start, node, &summary);
    metadata.drops = drops;
    let metadata = metadata.to_headers();
    let client = garage.client().await;
    client
        .put_object()
        .bucket(garage.bucket())
        .key(&key)
        .set_metadata(Some(metadata))
        .body(ByteStream::from(bytes.clone()))
        .send()
        .await
        .unwrap();
    let index_key = bucket::index_keys::index_key(
        template.static_prefix(),
        node,
        start,
        &name.ready_file_name(),
    );
    client
        .put_object()
        .bucket(garage.bucket())
        .key(index_key)
        .body(ByteStream::from(gz))
        .send()
        .await
        .unwrap();
    Put { key, bytes }
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn json(out: &assert_cmd::assert::Assert) -> Value {
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

/// Two nodes: node-a with captures at base and base+300 s (a gap between
/// them), node-b with one that interleaves with node-a's first.
struct Scene {
    base: DateTime<Utc>,
    a1: Put,
    a2: Put,
    b1: Put,
}

async fn scene(garage: &Garage) -> Scene {
    let base = (Utc::now() - TimeDelta::minutes(20)).trunc_subsecs(0);
    let s = |secs: f64| base + TimeDelta::milliseconds((secs * 1000.0) as i64);
    let client = [10, 0, 0, 1];
    let server = [10, 0, 0, 2];
    let a1 = pcap(&[
        Pkt {
            at: s(1.0),
            src: (client, 40000),
            dst: (server, 8080),
            tcp: Some("S"),
        },
        Pkt {
            at: s(1.5),
            src: (server, 8080),
            dst: (client, 40000),
            tcp: Some("R"),
        },
        Pkt {
            at: s(3.0),
            src: ([10, 0, 0, 3], 5000),
            dst: ([10, 0, 0, 4], 5001),
            tcp: None,
        },
    ]);
    let a2 = pcap(&[
        Pkt {
            at: s(301.0),
            src: ([10, 0, 0, 3], 5000),
            dst: ([10, 0, 0, 4], 5001),
            tcp: None,
        },
        Pkt {
            at: s(302.0),
            src: ([10, 0, 0, 3], 5000),
            dst: ([10, 0, 0, 4], 5001),
            tcp: None,
        },
    ]);
    let b1 = pcap(&[
        Pkt {
            at: s(1.2),
            src: ([10, 0, 1, 1], 6000),
            dst: ([10, 0, 1, 2], 6001),
            tcp: None,
        },
        Pkt {
            at: s(2.2),
            src: ([10, 0, 1, 1], 6000),
            dst: ([10, 0, 1, 2], 6001),
            tcp: None,
        },
    ]);
    Scene {
        base,
        a1: put_capture(garage, "node-a", base, a1, None).await,
        // The launcher counted 12 + 3 drops while a2 was written.
        a2: put_capture_with_drops(
            garage,
            "node-a",
            base + TimeDelta::seconds(300),
            a2,
            None,
            Some(bucket::object_metadata::Drops {
                kernel: 12,
                interface: 3,
                from: base + TimeDelta::seconds(295),
                to: base + TimeDelta::seconds(355),
            }),
        )
        .await,
        b1: put_capture(garage, "node-b", base + TimeDelta::seconds(1), b1, None).await,
    }
}

fn window(scene: &Scene) -> [String; 2] {
    [
        rfc(scene.base - TimeDelta::seconds(30)),
        rfc(scene.base + TimeDelta::seconds(400)),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn list_shows_each_nodes_captures_in_the_window_and_the_gap_between_them() {
    let test = "list_shows_each_nodes_captures_in_the_window_and_the_gap_between_them";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let scene = runtime().block_on(scene(&garage));
    let [from, to] = window(&scene);
    let out = garage
        .captures_over("list", &from, &to, &["--json"])
        .assert()
        .success();
    let listing = json(&out);
    let keys: Vec<&str> = listing["captures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [&scene.a1.key, &scene.a2.key, &scene.b1.key]);
    let first = &listing["captures"][0];
    assert_eq!(first["node"], "node-a");
    assert_eq!(first["packets"], 3);
    assert_eq!(first["size"], scene.a1.bytes.len());
    assert_eq!(time(&first["end"]), scene.base + TimeDelta::seconds(3));
    assert!(
        first.get("kernel_drops").is_none(),
        "no counts, none made up"
    );
    assert_eq!(listing["captures"][1]["kernel_drops"], 12);
    assert_eq!(listing["captures"][1]["interface_drops"], 3);
    // node-a: nothing between its first capture's last packet and the
    // second capture's start.
    let gaps = listing["gaps"].as_array().unwrap();
    assert!(
        gaps.iter().any(|g| g["node"] == "node-a"
            && time(&g["from"]) == scene.base + TimeDelta::seconds(3)
            && time(&g["to"]) == scene.base + TimeDelta::seconds(300)),
        "{listing:#}"
    );

    // --node narrows; text output names the node and the gap.
    let out = garage
        .captures_over("list", &from, &to, &["--node", "node-b"])
        .assert()
        .success();
    let text = stdout_of(&out);
    assert!(
        text.contains("node-b:") && text.contains(&scene.b1.key),
        "{text}"
    );
    assert!(!text.contains(&scene.a1.key), "{text}");

    // Text names the drops on the capture that had them, and sums them.
    let out = garage
        .captures_over("list", &from, &to, &["--node", "node-a"])
        .assert()
        .success();
    let text = stdout_of(&out);
    let a2_line = text.lines().find(|l| l.contains(&scene.a2.key)).unwrap();
    assert!(
        a2_line.contains("dropped while captured: 12 by the kernel, 3 by the interface"),
        "{text}"
    );
    let a1_line = text.lines().find(|l| l.contains(&scene.a1.key)).unwrap();
    assert!(!a1_line.contains("dropped"), "{text}");
    assert!(
        text.contains("dropped while captured: 12 by the kernel, 3 by the interface (counted in 1 of 2 captures)"),
        "{text}"
    );
}

#[test]
fn find_names_the_reset_flow_and_its_capture_from_the_index_alone() {
    let test = "find_names_the_reset_flow_and_its_capture_from_the_index_alone";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let scene = runtime().block_on(scene(&garage));
    let [from, to] = window(&scene);
    let out = garage
        .captures_over(
            "find",
            &from,
            &to,
            &["--host", "10.0.0.2", "--symptom", "reset", "--json"],
        )
        .assert()
        .success();
    let found = json(&out);
    let flows = found["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1, "{found:#}");
    assert_eq!(flows[0]["src"], "10.0.0.1");
    assert_eq!(flows[0]["dst"], "10.0.0.2");
    assert_eq!(flows[0]["dport"], 8080);
    assert_eq!(flows[0]["resets_dst"], 1);
    assert_eq!(flows[0]["capture"], scene.a1.key.as_str());
    assert_eq!(found["captures"], serde_json::json!([scene.a1.key]));

    // A port no flow uses: nothing, and said so.
    let out = garage
        .captures_over("find", &from, &to, &["--port", "9"])
        .assert()
        .success();
    assert!(stdout_of(&out).contains("no matching flows"));
}

/// A pcap's link type and packets (time, bytes). Raw records: pcap-file's
/// checked ones refuse packets cut by the snaplen (courvoif/pcap-file#36).
fn read_packets(path: &Path) -> (u32, Vec<(Duration, Vec<u8>)>) {
    let mut r = PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let header = r.header();
    let mut packets = Vec::new();
    while let Some(p) = r.next_raw_packet() {
        let p = p.unwrap();
        let at = spool::pcap::record_time(p.ts_sec, p.ts_frac, header.ts_resolution);
        packets.push((at, p.data.into_owned()));
    }
    (u32::from(header.datalink), packets)
}

#[test]
fn fetch_merge_holds_the_packets_mergecap_gives_in_the_same_order_and_tcpdump_reads_it() {
    let test =
        "fetch_merge_holds_the_packets_mergecap_gives_in_the_same_order_and_tcpdump_reads_it";
    let missing = ["/usr/bin/mergecap", "/usr/bin/tcpdump"]
        .into_iter()
        .find(|p| !Path::new(p).is_file())
        .map(|p| format!("{p} is missing (apt-get install tshark tcpdump)"));
    if !prerequisites::present_or_skip(test, missing) {
        return;
    }
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let scene = runtime().block_on(scene(&garage));
    let [from, to] = window(&scene);
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged.pcap");
    let downloads = dir.path().join("downloads");
    garage
        .captures_over(
            "fetch",
            &from,
            &to,
            &[
                "--out",
                downloads.to_str().unwrap(),
                "--merge",
                merged.to_str().unwrap(),
            ],
        )
        .assert()
        .success();

    // Each download is the object, byte for byte.
    for (node, put) in [
        ("node-a", &scene.a1),
        ("node-a", &scene.a2),
        ("node-b", &scene.b1),
    ] {
        let file = downloads
            .join(node)
            .join(put.key.rsplit('/').next().unwrap());
        assert_eq!(
            std::fs::read(&file).unwrap(),
            put.bytes,
            "{}",
            file.display()
        );
    }
    let inputs: Vec<PathBuf> = [
        ("node-a", &scene.a1),
        ("node-a", &scene.a2),
        ("node-b", &scene.b1),
    ]
    .iter()
    .map(|(node, put)| {
        downloads
            .join(node)
            .join(put.key.rsplit('/').next().unwrap())
    })
    .collect();
    let reference = dir.path().join("mergecap.pcap");
    let status = StdCommand::new("mergecap")
        .arg("-F")
        .arg("pcap")
        .arg("-w")
        .arg(&reference)
        .args(&inputs)
        .status()
        .unwrap();
    assert!(status.success());
    let (link, ours) = read_packets(&merged);
    let (ref_link, theirs) = read_packets(&reference);
    assert_eq!(link, ref_link);
    assert_eq!(ours.len(), 7);
    assert_eq!(ours, theirs, "the merge differs from mergecap's");

    test_support::assert_tcpdump_reads(&merged);

    // --host fetches only the captures the index says hold its flows.
    let only = dir.path().join("only");
    garage
        .captures_over(
            "fetch",
            &from,
            &to,
            &["--host", "10.0.1.1", "--out", only.to_str().unwrap()],
        )
        .assert()
        .success();
    let fetched: Vec<_> = walk(&only).into_iter().filter(|p| p.is_file()).collect();
    assert_eq!(
        fetched,
        [only
            .join("node-b")
            .join(scene.b1.key.rsplit('/').next().unwrap())]
    );

    // A window that ends at base+2 s keeps only the packets up to then.
    let cut = dir.path().join("cut.pcap");
    garage
        .captures_over(
            "fetch",
            &from,
            &rfc(scene.base + TimeDelta::seconds(2)),
            &["--merge", cut.to_str().unwrap()],
        )
        .assert()
        .success();
    let (_, kept) = read_packets(&cut);
    let expected: Vec<_> = theirs
        .iter()
        .filter(|(t, _)| {
            *t <= Duration::from_secs(u64::try_from(scene.base.timestamp()).unwrap() + 2)
        })
        .cloned()
        .collect();
    assert_eq!(kept, expected);
    assert_eq!(kept.len(), 3);
}

#[test]
fn a_capture_whose_sha256_does_not_match_fails_fetch_naming_the_key_and_leaves_no_file() {
    let test =
        "a_capture_whose_sha256_does_not_match_fails_fetch_naming_the_key_and_leaves_no_file";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let base = (Utc::now() - TimeDelta::minutes(10)).trunc_subsecs(0);
    let bytes = pcap(&[Pkt {
        at: base + TimeDelta::seconds(1),
        src: ([10, 0, 0, 1], 1),
        dst: ([10, 0, 0, 2], 2),
        tcp: None,
    }]);
    let bad = runtime().block_on(put_capture(
        &garage,
        "node-a",
        base,
        bytes,
        Some(&"0".repeat(64)),
    ));
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let merged = dir.path().join("merged.pcap");
    let out = garage
        .captures_over(
            "fetch",
            &rfc(base - TimeDelta::seconds(5)),
            &rfc(base + TimeDelta::seconds(30)),
            &[
                "--out",
                out_dir.to_str().unwrap(),
                "--merge",
                merged.to_str().unwrap(),
            ],
        )
        .assert()
        .failure();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&bad.key) && stderr.contains("SHA-256"),
        "{stderr}"
    );
    let left: Vec<_> = walk(dir.path());
    assert!(
        left.iter().all(|p| p.is_dir()),
        "files were left behind: {left:?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(walk(&path));
        }
        all.push(path);
    }
    all
}

#[test]
fn an_unknown_bucket_and_an_empty_window_are_named() {
    let test = "an_unknown_bucket_and_an_empty_window_are_named";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let out = garage
        .captures(&["list", "--bucket", "no-such-bucket-here", "--from", "-1h"])
        .assert()
        .failure();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("no-such-bucket-here") && stderr.contains("does not exist"),
        "{stderr}"
    );

    let out = garage
        .captures(&["list", "--from", "-1h"])
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .assert()
        .failure();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("no permission") && stderr.contains("s3:ListBucket"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-secret"), "{stderr}");

    let out = garage
        .captures(&["list", "--from", "-3h", "--to", "-2h", "--node", "node-a"])
        .assert()
        .failure();
    let stderr = stderr_of(&out);
    assert!(stderr.contains("no captures between"), "{stderr}");

    let out = garage
        .captures(&["list", "--from", "now", "--to", "-1h"])
        .assert()
        .failure();
    let stderr = stderr_of(&out);
    assert!(stderr.contains("the window is empty"), "{stderr}");
}

/// One tcpdump at a time in this binary: two closing at once can stall in
/// the kernel.
static TCPDUMP: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The first packet's time of a pcap file.
fn first_packet_time(path: &Path) -> DateTime<Utc> {
    let (_, packets) = read_packets(path);
    let first = packets.first().expect("the capture holds packets").0;
    DateTime::from_timestamp(
        i64::try_from(first.as_secs()).unwrap(),
        first.subsec_nanos(),
    )
    .unwrap()
}

/// Each packet of a capture as tshark reads it: time (seconds, nanoseconds),
/// its first protocol (the link layer) and the MD5 of its bytes.
fn tshark_packets(path: &Path) -> Vec<((u64, u32), String, String)> {
    let out = StdCommand::new("tshark")
        .args(["-n", "-o", "frame.generate_md5_hash:TRUE", "-r"])
        .arg(path)
        .args(["-T", "fields", "-E", "separator=/t"])
        .args(["-e", "frame.time_epoch", "-e", "frame.protocols"])
        .args(["-e", "frame.md5_hash"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tshark -r {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut fields = line.split('\t');
            let time = fields.next().unwrap();
            let (secs, frac) = time.split_once('.').unwrap_or((time, "0"));
            let nanos = format!("{frac:0<9}")[..9].parse().unwrap();
            let link = fields.next().unwrap().split(':').next().unwrap().to_owned();
            let md5 = fields.next().unwrap().to_owned();
            ((secs.parse().unwrap(), nanos), link, md5)
        })
        .collect()
}

fn capinfos(path: &Path) -> String {
    let out = StdCommand::new("capinfos").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "capinfos {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn merging_an_any_capture_cut_by_its_snaplen_with_an_ethernet_one_gives_pcapng_that_tshark_reads_as_mergecap_cut_to_the_window()
 {
    let test = "merging_an_any_capture_cut_by_its_snaplen_with_an_ethernet_one_gives_pcapng_that_tshark_reads_as_mergecap_cut_to_the_window";
    let missing = ["/usr/bin/mergecap", "/usr/bin/capinfos", "/usr/bin/tshark"]
        .into_iter()
        .find(|p| !Path::new(p).is_file())
        .map(|p| format!("{p} is missing (apt-get install tshark)"));
    if !prerequisites::can_capture(test) || !prerequisites::present_or_skip(test, missing) {
        return;
    }
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (on_lo, on_any) = (dir.path().join("lo.pcap"), dir.path().join("any.pcap"));
    {
        // Both at once, so their packets interleave; stopped one after the
        // other.
        let _one = TCPDUMP
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lo = traffic::start_tcpdump(&on_lo, &["-i", "lo"], traffic::FILTER);
        // Cut by the snaplen, as `-s` cuts packets on a busy node.
        let any = traffic::start_tcpdump(&on_any, &["-i", "any", "-s", "96"], traffic::FILTER);
        traffic::inject();
        std::thread::sleep(Duration::from_millis(200));
        traffic::stop_tcpdump(lo);
        traffic::stop_tcpdump(any);
    }
    assert_eq!(read_packets(&on_lo).0, 1, "lo is Ethernet");
    assert_eq!(read_packets(&on_any).0, 276, "any is Linux cooked v2");
    assert!(
        traffic::tshark_count(&on_any, "frame.len > frame.cap_len") > 0,
        "-s 96 cut no packet: the snaplen case is not tested"
    );
    let start = |path: &Path| first_packet_time(path).trunc_subsecs(0);
    runtime().block_on(async {
        put_capture(
            &garage,
            "node-a",
            start(&on_lo),
            std::fs::read(&on_lo).unwrap(),
            None,
        )
        .await;
        put_capture(
            &garage,
            "node-b",
            start(&on_any),
            std::fs::read(&on_any).unwrap(),
            None,
        )
        .await;
    });

    // The reference: mergecap over the same two files, node-a's first (the
    // order fetch downloads them in), then cut at the window's end.
    let reference = dir.path().join("mergecap.pcapng");
    let status = StdCommand::new("mergecap")
        .arg("-w")
        .arg(&reference)
        .args([&on_lo, &on_any])
        .status()
        .unwrap();
    assert!(status.success());
    let all = tshark_packets(&reference);
    // A window that ends halfway through the packets.
    let cut_at = all[all.len() / 2].0;
    let to = DateTime::from_timestamp(i64::try_from(cut_at.0).unwrap(), cut_at.1).unwrap();
    let from = start(&on_lo).min(start(&on_any)) - TimeDelta::seconds(30);
    let expected: Vec<_> = all.iter().filter(|p| p.0 <= cut_at).cloned().collect();

    let merged = dir.path().join("merged.pcapng");
    let out = garage
        .captures_over(
            "fetch",
            &rfc(from),
            &rfc(to),
            &["--merge", merged.to_str().unwrap()],
        )
        .assert()
        .success();
    let said = stdout_of(&out);
    assert!(
        said.contains("pcapng") && said.contains("node-a") && said.contains("node-b"),
        "{said}"
    );

    let ours = tshark_packets(&merged);
    assert_eq!(ours.len(), expected.len());
    assert_eq!(ours, expected, "the merge differs from mergecap's, cut");
    assert!(
        ours.iter().any(|p| p.1 == "eth") && ours.iter().any(|p| p.1 == "sll"),
        "each packet keeps its own link type: {ours:?}"
    );

    let info = capinfos(&merged);
    for needed in [
        "pcapng",
        &format!("Number of packets:   {}", expected.len()),
        "Number of interfaces in file: 2",
        "Encapsulation = Ethernet",
        "Encapsulation = Linux cooked-mode capture v2",
    ] {
        assert!(info.contains(needed), "{needed:?} missing from:\n{info}");
    }
    // libpcap reads one link type per file ("an interface has a type 276
    // different from the type of the first interface"), so tcpdump reads
    // one node's merge, which is a plain pcap.
    let one_node = dir.path().join("node-b.pcap");
    let out = garage
        .captures_over(
            "fetch",
            &rfc(from),
            &rfc(to),
            &["--node", "node-b", "--merge", one_node.to_str().unwrap()],
        )
        .assert()
        .success();
    let said = stdout_of(&out);
    assert!(said.contains("pcap (link type 276"), "{said}");
    test_support::assert_tcpdump_reads(&one_node);
}

#[test]
fn explain_on_a_selection_streams_the_captures_and_reports_what_explain_on_the_fetched_files_does()
{
    let test = "explain_on_a_selection_streams_the_captures_and_reports_what_explain_on_the_fetched_files_does";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let scene = runtime().block_on(scene(&garage));
    let [from, to] = window(&scene);
    let dir = tempfile::tempdir().unwrap();
    let downloads = dir.path().join("downloads");
    garage
        .captures_over("fetch", &from, &to, &["--out", downloads.to_str().unwrap()])
        .assert()
        .success();
    let files: Vec<PathBuf> = walk(&downloads)
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    let mut local = Command::cargo_bin("captures").unwrap();
    local.arg("explain").args(&files).arg("--json");
    let local = json(&local.assert().success());

    // From the bucket, in a folder of its own: nothing is written there.
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let remote = garage
        .captures_over("explain", &from, &to, &["--json"])
        .current_dir(&cwd)
        .assert()
        .success();
    let remote = json(&remote);
    assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0);
    let keys: Vec<&str> = remote["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [&scene.a1.key, &scene.a2.key, &scene.b1.key]);
    assert_eq!(remote["totals"], local["totals"]);
    let endpoints = |report: &Value| -> Vec<(String, String, u64)> {
        report["flows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["src"].as_str().unwrap().to_owned(),
                    f["dst"].as_str().unwrap().to_owned(),
                    f["dport"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(endpoints(&remote), endpoints(&local));
    assert_eq!(
        endpoints(&remote),
        [("10.0.0.1".to_owned(), "10.0.0.2".to_owned(), 8080)]
    );
    assert_eq!(remote["flows"][0]["capture"], scene.a1.key.as_str());

    // --host keeps the captures (and flows) of that host only: none failing.
    let out = garage
        .captures_over("explain", &from, &to, &["--host", "10.0.1.1"])
        .assert()
        .success();
    let text = stdout_of(&out);
    assert!(
        text.contains(&scene.b1.key) && !text.contains(&scene.a1.key),
        "{text}"
    );
    assert!(text.contains("no symptoms found"), "{text}");
}

#[test]
fn explain_on_a_selection_refuses_a_capture_whose_sha256_does_not_match_naming_the_key() {
    let test =
        "explain_on_a_selection_refuses_a_capture_whose_sha256_does_not_match_naming_the_key";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let base = (Utc::now() - TimeDelta::minutes(10)).trunc_subsecs(0);
    let bytes = pcap(&[Pkt {
        at: base + TimeDelta::seconds(1),
        src: ([10, 0, 0, 1], 1),
        dst: ([10, 0, 0, 2], 2),
        tcp: None,
    }]);
    let bad = runtime().block_on(put_capture(
        &garage,
        "node-a",
        base,
        bytes,
        Some(&"0".repeat(64)),
    ));
    let out = garage
        .captures_over(
            "explain",
            &rfc(base - TimeDelta::seconds(5)),
            &rfc(base + TimeDelta::seconds(30)),
            &[],
        )
        .assert()
        .failure();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&bad.key) && stderr.contains("SHA-256"),
        "{stderr}"
    );
    assert!(out.get_output().stdout.is_empty(), "no report printed");

    // Files and a selection are one or the other.
    let out = garage
        .captures(&["explain", "x.pcap", "--from", "-1h"])
        .assert()
        .failure();
    let stderr = stderr_of(&out);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

/// The uploader binary beside this crate's `captures` (one target folder
/// for the workspace; `scripts/test` builds every binary first).
fn uploader_binary() -> PathBuf {
    let captures = PathBuf::from(env!("CARGO_BIN_EXE_captures"));
    let uploader = captures.with_file_name("uploader");
    assert!(
        uploader.is_file(),
        "{} is missing: this test runs the real uploader; build it first (cargo build -p uploader)",
        uploader.display()
    );
    uploader
}

/// Issue 21: a bucket written with any S3_KEY_TEMPLATE is read by
/// `captures` with no flag, through the layout record the uploader writes.
#[test]
fn captures_reads_a_bucket_written_with_a_custom_key_template_with_no_flag() {
    let test = "captures_reads_a_bucket_written_with_a_custom_key_template_with_no_flag";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let template = "traces/{cluster}/{node}/{yyyy}{mm}{dd}/{hh}-{file}";
    let base = (Utc::now() - TimeDelta::minutes(20)).trunc_subsecs(0);
    let s = |secs: f64| base + TimeDelta::milliseconds((secs * 1000.0) as i64);
    let bytes = pcap(&[
        Pkt {
            at: s(1.0),
            src: ([10, 0, 0, 1], 40000),
            dst: ([10, 0, 0, 2], 8080),
            tcp: Some("S"),
        },
        Pkt {
            at: s(1.5),
            src: ([10, 0, 0, 2], 8080),
            dst: ([10, 0, 0, 1], 40000),
            tcp: Some("R"),
        },
    ]);
    let spool = test_support::Spool::with_capture_folders();
    let name = CaptureName::new(base, 0).ready_file_name();
    std::fs::write(spool.ready().join(&name), &bytes).unwrap();
    let uploaded = garage
        .uploader(uploader_binary().to_str().unwrap(), &spool)
        .env("S3_KEY_TEMPLATE", template)
        .env("CLUSTER_NAME", "lab")
        .arg("--once")
        .output()
        .unwrap();
    assert!(
        uploaded.status.success(),
        "{}",
        String::from_utf8_lossy(&uploaded.stderr)
    );
    let key = format!(
        "traces/lab/test-node/{}/{}-{name}",
        base.format("%Y%m%d"),
        base.format("%H")
    );
    let record = runtime().block_on(garage.get("traces/.s3-tcpdump-layout.json"));
    let (record, _) = record.expect("the uploader wrote no layout record under traces/");
    let record: Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(record["key_template"], template);

    let (from, to) = (
        rfc(base - TimeDelta::seconds(30)),
        rfc(base + TimeDelta::seconds(60)),
    );
    let listing = json(
        &garage
            .captures_over("list", &from, &to, &["--json"])
            .assert()
            .success(),
    );
    assert_eq!(listing["captures"][0]["key"], key.as_str(), "{listing:#}");
    assert_eq!(listing["captures"][0]["node"], "test-node", "{listing:#}");
    assert_eq!(
        listing["captures"].as_array().unwrap().len(),
        1,
        "{listing:#}"
    );

    let found = json(
        &garage
            .captures_over("find", &from, &to, &["--symptom", "reset", "--json"])
            .assert()
            .success(),
    );
    assert_eq!(found["captures"], serde_json::json!([key]), "{found:#}");

    let downloads = tempfile::tempdir().unwrap();
    garage
        .captures_over(
            "fetch",
            &from,
            &to,
            &["--out", downloads.path().to_str().unwrap()],
        )
        .assert()
        .success();
    // Downloads are named after the key's last segment.
    let file = key.rsplit('/').next().unwrap();
    let fetched = std::fs::read(downloads.path().join("test-node").join(file)).unwrap();
    assert_eq!(fetched, bytes);

    // Without the record (an uploader older than it): the default layout
    // finds nothing, and --key-template is the way in.
    runtime().block_on(async {
        garage
            .client()
            .await
            .delete_object()
            .bucket(garage.bucket())
            .key("traces/.s3-tcpdump-layout.json")
            .send()
            .await
            .unwrap()
    });
    let refused = garage
        .captures_over("list", &from, &to, &[])
        .assert()
        .failure();
    assert!(
        stderr_of(&refused)
            .contains("no node has a flow index under s3://captures/tcp-dumps/index/,"),
        "{}",
        stderr_of(&refused)
    );
    let listing = json(
        &garage
            .captures_over("list", &from, &to, &["--key-template", template, "--json"])
            .assert()
            .success(),
    );
    assert_eq!(listing["captures"][0]["key"], key.as_str(), "{listing:#}");
}

/// Issue 20, item 4: any node's role can write any node's index, so an
/// index object is untrusted input.
#[test]
fn find_refuses_a_gzip_bomb_index_by_name_and_still_finds_the_other_flows() {
    let test = "find_refuses_a_gzip_bomb_index_by_name_and_still_finds_the_other_flows";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let scene = runtime().block_on(scene(&garage));
    // 1 GiB of zeros (one endless line), some 1 MB compressed, where
    // node-a's index of a capture at base + 100 s would be.
    let bomb = StdCommand::new("sh")
        .args(["-c", "head -c 1073741824 /dev/zero | gzip -1"])
        .output()
        .unwrap();
    assert!(bomb.status.success() && bomb.stdout.len() < 8 << 20);
    let start = scene.base + TimeDelta::seconds(100);
    let bomb_key = bucket::index_keys::index_key(
        KeyTemplate::parse(DEFAULT_TEMPLATE)
            .unwrap()
            .static_prefix(),
        "node-a",
        start,
        &CaptureName::new(start, 0).ready_file_name(),
    );
    runtime().block_on(async {
        garage
            .client()
            .await
            .put_object()
            .bucket(garage.bucket())
            .key(&bomb_key)
            .body(ByteStream::from(bomb.stdout))
            .send()
            .await
            .unwrap();
    });
    let [from, to] = window(&scene);
    let out = garage
        .captures_over("find", &from, &to, &["--host", "10.0.0.2", "--json"])
        .assert()
        .failure();
    let found = json(&out);
    let flows = found["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1, "{found:#}");
    assert_eq!(flows[0]["capture"], scene.a1.key.as_str());
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!("skipped index object {bomb_key}"))
            && stderr.contains("longer than 65536 bytes")
            && stderr.contains("1 index object(s) refused"),
        "{stderr}"
    );
    assert_eq!(found["refused"][0]["key"], bomb_key.as_str(), "{found:#}");
}

// ---- Selecting and naming by identity (the identity journals) ----

/// Puts one journal segment of `node` as the uploader ships it, written by
/// the journal's own segment writer.
async fn put_journal(
    garage: &Garage,
    node: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    lines: Vec<bucket::journal_record::JournalLine>,
) {
    let dir = tempfile::tempdir().unwrap();
    let segment = journal::table::Segment {
        header: test_support::journal_fixture::header(node, from, to),
        lines,
    };
    let (path, _) = journal::segment::write(dir.path(), &segment).unwrap();
    let file = path.file_name().unwrap().to_str().unwrap().to_owned();
    let key = bucket::journal_keys::journal_key("tcp-dumps/", node, from, &file);
    garage.put(&key, std::fs::read(&path).unwrap()).await;
}

fn pod_interval(
    ip: &str,
    namespace: &str,
    name: &str,
    node: &str,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
) -> bucket::journal_record::JournalLine {
    bucket::journal_record::JournalLine::Pod(bucket::journal_record::PodInterval {
        ip: ip.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: format!("uid-{name}"),
        owner: None,
        workload: None,
        labels: std::collections::BTreeMap::from([("app".to_owned(), name[..3].to_owned())]),
        host_network: false,
        node: node.to_owned(),
        valid_from: from,
        valid_to: to,
    })
}

/// node-a: one capture of 120 s. 10.0.3.7 is `payments/api-a-1`'s until
/// 40 s, then, 30 s later, `payments/web-b-1`'s; a client pod at
/// 10.0.9.1 connects to it at 10 s (refused) and again at 80 s (refused).
/// node-b: one capture with a flow of 10.0.1.99, and no journal at all.
struct IdentityScene {
    base: DateTime<Utc>,
}

async fn identity_scene(garage: &Garage) -> IdentityScene {
    let base = (Utc::now() - TimeDelta::minutes(20)).trunc_subsecs(0);
    let s = |secs: f64| base + TimeDelta::milliseconds((secs * 1000.0) as i64);
    let (client, pod) = ([10, 0, 9, 1], [10, 0, 3, 7]);
    let a = pcap(&[
        Pkt {
            at: s(10.0),
            src: (client, 40000),
            dst: (pod, 8080),
            tcp: Some("S"),
        },
        Pkt {
            at: s(10.5),
            src: (pod, 8080),
            dst: (client, 40000),
            tcp: Some("R"),
        },
        Pkt {
            at: s(80.0),
            src: (client, 40001),
            dst: (pod, 8080),
            tcp: Some("S"),
        },
        Pkt {
            at: s(80.5),
            src: (pod, 8080),
            dst: (client, 40001),
            tcp: Some("R"),
        },
    ]);
    let b = pcap(&[Pkt {
        at: s(30.0),
        src: ([10, 0, 1, 99], 5000),
        dst: ([10, 0, 1, 98], 5001),
        tcp: None,
    }]);
    put_capture(garage, "node-a", base, a, None).await;
    put_capture(garage, "node-b", base, b, None).await;
    let long_ago = base - TimeDelta::hours(1);
    let client_pod = || pod_interval("10.0.9.1", "payments", "client-x", "node-a", long_ago, None);
    put_journal(
        garage,
        "node-a",
        base,
        s(60.0),
        vec![
            pod_interval(
                "10.0.3.7",
                "payments",
                "api-a-1",
                "node-a",
                long_ago,
                Some(s(40.0)),
            ),
            client_pod(),
        ],
    )
    .await;
    // The next segment restates the client's open interval.
    put_journal(
        garage,
        "node-a",
        s(60.0),
        s(120.0),
        vec![
            pod_interval("10.0.3.7", "payments", "web-b-1", "node-a", s(70.0), None),
            client_pod(),
        ],
    )
    .await;
    IdentityScene { base }
}

fn identity_window(scene: &IdentityScene) -> [String; 2] {
    [
        rfc(scene.base - TimeDelta::seconds(30)),
        rfc(scene.base + TimeDelta::seconds(200)),
    ]
}

#[test]
fn find_by_pod_returns_only_the_flows_of_the_pod_that_held_a_reused_address_then() {
    let test = "find_by_pod_returns_only_the_flows_of_the_pod_that_held_a_reused_address_then";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let scene = runtime().block_on(identity_scene(&garage));
    let [from, to] = identity_window(&scene);

    let out = garage
        .captures_over("find", &from, &to, &["--pod", "payments/api-a"])
        .assert()
        .success();
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "only the first pod's flow: {text}");
    assert!(
        lines[0]
            .contains("tcp 10.0.9.1:40000 (payments/client-x) -> 10.0.3.7:8080 (payments/api-a-1)"),
        "{text}"
    );

    // By address, both flows, each named by the pod that held it then.
    let out = garage
        .captures_over("find", &from, &to, &["--host", "10.0.3.7"])
        .assert()
        .success();
    let text = stdout_of(&out);
    assert!(
        text.contains(":40000 (payments/client-x) -> 10.0.3.7:8080 (payments/api-a-1)"),
        "{text}"
    );
    assert!(
        text.contains(":40001 (payments/client-x) -> 10.0.3.7:8080 (payments/web-b-1)"),
        "{text}"
    );

    let out = garage
        .captures_over("find", &from, &to, &["--pod", "payments/web", "--json"])
        .assert()
        .success();
    let found = json(&out);
    let flows = found["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1, "{found}");
    assert_eq!(flows[0]["sport"], 40001);
    assert_eq!(flows[0]["dst_owner"]["resolution"], "known");
    assert_eq!(flows[0]["dst_owner"]["owner"]["name"], "web-b-1");

    // A selector combines with --port.
    let out = garage
        .captures_over(
            "find",
            &from,
            &to,
            &["--selector", "app=api", "--port", "8080"],
        )
        .assert()
        .success();
    assert_eq!(stdout_of(&out).lines().count(), 1, "{}", stdout_of(&out));
}

#[test]
fn explain_names_each_flows_pod_by_its_time_and_unknown_where_no_journal_covers() {
    let test = "explain_names_each_flows_pod_by_its_time_and_unknown_where_no_journal_covers";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let scene = runtime().block_on(identity_scene(&garage));
    let [from, to] = identity_window(&scene);

    let out = garage
        .captures_over("explain", &from, &to, &["--host", "10.0.3.7"])
        .assert()
        .success();
    let text = stdout_of(&out);
    assert!(
        text.contains(
            "10.0.9.1:40000 (payments/client-x) -> 10.0.3.7:8080 (payments/api-a-1)  refused"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "10.0.9.1:40001 (payments/client-x) -> 10.0.3.7:8080 (payments/web-b-1)  refused"
        ),
        "{text}"
    );

    // node-b uploaded its capture without any journal: its addresses are
    // unknown, and the capture is still found.
    let out = garage
        .captures_over("find", &from, &to, &["--host", "10.0.1.99"])
        .assert()
        .success();
    let text = stdout_of(&out);
    assert!(
        text.contains("10.0.1.99:5000 (unknown) -> 10.0.1.98:5001 (unknown)"),
        "{text}"
    );

    // explain FILE with the bucket (S3_BUCKET here) names from its journals.
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged.pcap");
    garage
        .captures_over("fetch", &from, &to, &["--node", "node-a", "--merge"])
        .arg(&merged)
        .assert()
        .success();
    let out = garage
        .captures(&["explain"])
        .arg(&merged)
        .assert()
        .success();
    let text = stdout_of(&out);
    assert!(
        text.contains(
            "10.0.9.1:40001 (payments/client-x) -> 10.0.3.7:8080 (payments/web-b-1)  refused"
        ),
        "{text}"
    );

    // explain --pod: only the first pod's refused connection.
    let out = garage
        .captures_over(
            "explain",
            &from,
            &to,
            &["--pod", "payments/api-a", "--json"],
        )
        .assert()
        .success();
    let report = json(&out);
    let flows = report["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1, "{report}");
    assert_eq!(flows[0]["dst_owner"]["owner"]["name"], "api-a-1");
}

#[test]
fn a_pod_selection_that_matches_nothing_is_refused_naming_the_pods_near_it() {
    let test = "a_pod_selection_that_matches_nothing_is_refused_naming_the_pods_near_it";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let scene = runtime().block_on(identity_scene(&garage));
    let [from, to] = identity_window(&scene);
    let out = garage
        .captures_over("find", &from, &to, &["--pod", "payments/apx"])
        .assert()
        .failure();
    let err = stderr_of(&out);
    assert!(
        err.contains("pod payments/apx*") && err.contains("api-a-1, client-x, web-b-1"),
        "{err}"
    );
    let out = garage
        .captures_over(
            "fetch",
            &from,
            &to,
            &["--service", "default/kubernetes", "--out", "/nonexistent"],
        )
        .assert()
        .failure();
    assert!(
        stderr_of(&out).contains("service default/kubernetes"),
        "{}",
        stderr_of(&out)
    );

    // list --pod: the captures of the node where the pod ran, not node-b's.
    let out = garage
        .captures_over("list", &from, &to, &["--pod", "payments/api-a", "--json"])
        .assert()
        .success();
    let listing = json(&out);
    let nodes: Vec<&str> = listing["captures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["node-a"], "{listing}");
}

#[test]
fn fetch_merge_names_writes_pcapng_whose_addresses_tshark_shows_as_pods() {
    let test = "fetch_merge_names_writes_pcapng_whose_addresses_tshark_shows_as_pods";
    let missing = (!Path::new("/usr/bin/tshark").is_file())
        .then(|| "/usr/bin/tshark is missing (apt-get install tshark)".to_owned());
    if !prerequisites::present_or_skip(test, missing) {
        return;
    }
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let scene = runtime().block_on(identity_scene(&garage));
    let [from, to] = identity_window(&scene);
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged.pcapng");
    let out = garage
        .captures_over("fetch", &from, &to, &["--node", "node-a", "--merge"])
        .arg(&merged)
        .arg("--names")
        .assert()
        .success();
    assert!(
        stdout_of(&out).contains("addresses named"),
        "{}",
        stdout_of(&out)
    );
    let tshark = StdCommand::new("tshark")
        .args(["-N", "n", "-r"])
        .arg(&merged)
        .args(["-T", "fields", "-e", "ip.src_host", "-e", "ip.dst_host"])
        .output()
        .unwrap();
    assert!(
        tshark.status.success(),
        "{}",
        String::from_utf8_lossy(&tshark.stderr)
    );
    let text = String::from_utf8(tshark.stdout).unwrap();
    let first = text.lines().next().unwrap();
    // The client held its address all along; the server's was reused in
    // the window, and the one name a pcapng file can give it says so.
    assert_eq!(
        first, "payments/client-x\tambiguous: payments/api-a-1 or payments/web-b-1",
        "{text}"
    );
}

#[test]
fn a_journal_object_that_is_not_one_is_named_and_skipped_and_a_newer_schema_is_refused() {
    let test =
        "a_journal_object_that_is_not_one_is_named_and_skipped_and_a_newer_schema_is_refused";
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let scene = runtime().block_on(identity_scene(&garage));
    let [from, to] = identity_window(&scene);
    let put = |node: &str, body: Vec<u8>| {
        let file = bucket::journal_keys::journal_file_name(scene.base);
        let key = bucket::journal_keys::journal_key("tcp-dumps/", node, scene.base, &file);
        runtime().block_on(async {
            garage
                .client()
                .await
                .put_object()
                .bucket(garage.bucket())
                .key(&key)
                .body(ByteStream::from(body))
                .send()
                .await
                .unwrap();
        });
        key
    };
    let junk = put("node-c", b"\x1b[2J not gzip".to_vec());
    let out = garage
        .captures_over("find", &from, &to, &["--pod", "payments/api-a"])
        .assert()
        .success();
    assert_eq!(stdout_of(&out).lines().count(), 1, "{}", stdout_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!("skipped journal object {junk}: is not gzip")),
        "{err}"
    );

    let newer = {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut header = serde_json::to_value(bucket::journal_record::JournalLine::Segment(
            test_support::journal_fixture::header(
                "node-d",
                scene.base,
                scene.base + TimeDelta::seconds(60),
            ),
        ))
        .unwrap();
        header["schema"] = 99.into();
        gz.write_all(header.to_string().as_bytes()).unwrap();
        gz.finish().unwrap()
    };
    // A newer journal: names go on without it (named on stderr), a
    // selection through the journals is refused, saying to upgrade.
    let newer_key = put("node-d", newer);
    let out = garage
        .captures_over("find", &from, &to, &["--host", "10.0.3.7"])
        .assert()
        .success();
    assert!(
        stdout_of(&out).contains("(payments/api-a-1)"),
        "{}",
        stdout_of(&out)
    );
    let err = stderr_of(&out);
    assert!(
        err.contains(&newer_key) && err.contains("schema 99") && err.contains("newer captures"),
        "{err}"
    );
    let out = garage
        .captures_over("find", &from, &to, &["--pod", "payments/api-a"])
        .assert()
        .failure();
    let err = stderr_of(&out);
    assert!(
        err.contains("pod payments/api-a* cannot be resolved")
            && err.contains(&newer_key)
            && err.contains("newer captures"),
        "{err}"
    );
}
