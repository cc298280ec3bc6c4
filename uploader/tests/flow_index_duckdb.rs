//! DuckDB reads the flow index as the uploader lays it out, with its Hive
//! partitions: two nodes' captures uploaded by the real uploader to garage,
//! the index objects copied into a folder under the same keys (DuckDB reads
//! S3 through an extension it downloads at run time, so the bucket itself
//! is not read here), then queried with `read_json_auto(…,
//! hive_partitioning = true)`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapPacket, PcapWriter};
use serde_json::{Value, json};
use spool::CaptureName;
use test_support::{Garage, Spool, prerequisites};

const UPLOADER: &str = env!("CARGO_BIN_EXE_uploader");

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A packet of a capture: UDP, or a TCP SYN ("S") or reset ("R").
struct Packet {
    after_ms: i64,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    tcp: Option<&'static str>,
}

/// A pcap whose packets start at `start`.
fn capture(start: DateTime<Utc>, packets: &[Packet]) -> Vec<u8> {
    let mut writer = PcapWriter::new(Vec::new()).unwrap();
    for p in packets {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(p.src.0, p.dst.0, 64);
        let mut frame = Vec::new();
        match p.tcp {
            Some("S") => builder
                .tcp(p.src.1, p.dst.1, 1000, 64240)
                .syn()
                .write(&mut frame, &[]),
            Some(_) => builder
                .tcp(p.src.1, p.dst.1, 0, 0)
                .rst()
                .ack(1001)
                .write(&mut frame, &[]),
            None => builder.udp(p.src.1, p.dst.1).write(&mut frame, b"hello"),
        }
        .unwrap();
        let t = start + TimeDelta::milliseconds(p.after_ms);
        let ts = Duration::new(
            u64::try_from(t.timestamp()).unwrap(),
            t.timestamp_subsec_nanos(),
        );
        writer
            .write_packet(&PcapPacket::new(
                ts,
                u32::try_from(frame.len()).unwrap(),
                &frame,
            ))
            .unwrap();
    }
    writer.into_writer()
}

fn udp(after_ms: i64, src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> Packet {
    Packet {
        after_ms,
        src,
        dst,
        tcp: None,
    }
}

/// Uploads `captures` as node `node` with the real uploader (`--once`).
fn upload(garage: &Garage, node: &str, captures: &[(DateTime<Utc>, Vec<u8>)]) {
    let spool = Spool::with_capture_folders();
    for (start, bytes) in captures {
        let name = CaptureName::new(*start, 0).ready_file_name();
        std::fs::write(spool.ready().join(name), bytes).unwrap();
    }
    let out = garage
        .uploader(UPLOADER, &spool)
        .env("NODE_NAME", node)
        .arg("--once")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "uploader --once: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(spool.ready_names().is_empty(), "left behind in ready/");
}

/// Runs `sql` in DuckDB; its rows as JSON arrays.
fn duckdb(python: &Path, sql: &str) -> Vec<Value> {
    let script = "import duckdb, json, sys\n\
                  rows = duckdb.sql(sys.argv[1]).fetchall()\n\
                  print(json.dumps([list(r) for r in rows], default=str))";
    let out = Command::new(python)
        .args(["-c", script, sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "duckdb {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

#[test]
fn duckdb_reads_the_uploaded_flow_index_in_place_with_node_date_and_hour_partitions() {
    let test = "duckdb_reads_the_uploaded_flow_index_in_place_with_node_date_and_hour_partitions";
    let Some(python) = prerequisites::duckdb_python(test) else {
        return;
    };
    let Some(garage) = Garage::start(test) else {
        return;
    };
    let (client, server) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let (a3, a4) = ([10, 0, 0, 3], [10, 0, 0, 4]);
    let (b1, b2) = ([10, 0, 1, 1], [10, 0, 1, 2]);
    let a_14 = at("2026-11-27T14:25:03Z");
    let a_15 = at("2026-11-27T15:00:10Z");
    let b_14 = at("2026-11-27T14:40:00Z");
    upload(
        &garage,
        "node-a",
        &[
            (
                a_14,
                capture(
                    a_14,
                    &[
                        Packet {
                            after_ms: 100,
                            src: (client, 40000),
                            dst: (server, 8080),
                            tcp: Some("S"),
                        },
                        Packet {
                            after_ms: 101,
                            src: (server, 8080),
                            dst: (client, 40000),
                            tcp: Some("R"),
                        },
                        udp(200, (a3, 5000), (a4, 5001)),
                        udp(300, (a3, 5000), (a4, 5001)),
                        udp(400, (a3, 5000), (a4, 5001)),
                    ],
                ),
            ),
            (
                a_15,
                capture(
                    a_15,
                    &[
                        udp(10, (a3, 5000), (a4, 5001)),
                        udp(20, (a4, 5001), (a3, 5000)),
                    ],
                ),
            ),
        ],
    );
    upload(
        &garage,
        "node-b",
        &[(
            b_14,
            capture(
                b_14,
                &[
                    udp(1, (b1, 6000), (b2, 6001)),
                    udp(2, (b1, 6000), (b2, 6001)),
                ],
            ),
        )],
    );

    // The index objects, copied under their keys.
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let index_keys: Vec<String> = runtime
        .block_on(garage.keys())
        .into_iter()
        .filter(|k| k.starts_with("tcp-dumps/index/"))
        .collect();
    assert_eq!(index_keys.len(), 3, "{index_keys:?}");
    for key in &index_keys {
        let (body, _) = runtime.block_on(garage.get(key)).unwrap();
        let path = dir.path().join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    let index = format!(
        "read_json_auto('{}/tcp-dumps/index/**/*.jsonl.gz', hive_partitioning = true)",
        dir.path().display()
    );

    let rows = duckdb(
        &python,
        &format!(
            "SELECT node, CAST(date AS VARCHAR), CAST(hour AS INTEGER), proto, src, sport, dst, dport, \
             packets_src, packets_dst, resets_dst, regexp_extract(capture, '[^/]*$') \
             FROM {index} ORDER BY node, date, hour, proto"
        ),
    );
    let file = |start: DateTime<Utc>| CaptureName::new(start, 0).ready_file_name();
    assert_eq!(
        rows,
        [
            json!([
                "node-a",
                "2026-11-27",
                14,
                "tcp",
                "10.0.0.1",
                40000,
                "10.0.0.2",
                8080,
                1,
                1,
                1,
                file(a_14)
            ]),
            json!([
                "node-a",
                "2026-11-27",
                14,
                "udp",
                "10.0.0.3",
                5000,
                "10.0.0.4",
                5001,
                3,
                0,
                0,
                file(a_14)
            ]),
            json!([
                "node-a",
                "2026-11-27",
                15,
                "udp",
                "10.0.0.3",
                5000,
                "10.0.0.4",
                5001,
                1,
                1,
                0,
                file(a_15)
            ]),
            json!([
                "node-b",
                "2026-11-27",
                14,
                "udp",
                "10.0.1.1",
                6000,
                "10.0.1.2",
                6001,
                2,
                0,
                0,
                file(b_14)
            ]),
        ]
    );

    // The partitions filter like columns (and prune the files read).
    let per_partition = duckdb(
        &python,
        &format!(
            "SELECT node, CAST(hour AS INTEGER), count(*) FROM {index} \
             WHERE date = DATE '2026-11-27' AND hour = 14 GROUP BY ALL ORDER BY ALL"
        ),
    );
    assert_eq!(
        per_partition,
        [json!(["node-a", 14, 2]), json!(["node-b", 14, 1])]
    );
    // Symptoms are plain columns: the refused connection, by who reset it.
    let refused = duckdb(
        &python,
        &format!(
            "SELECT node, dst, dport FROM {index} WHERE resets_dst > 0 AND resets_in_handshake > 0"
        ),
    );
    assert_eq!(refused, [json!(["node-a", "10.0.0.2", 8080])]);
}
