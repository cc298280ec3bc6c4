//! Numbered traffic: UDP datagrams carrying `s3td-seq:` and a 12-digit
//! number, sent at a steady rate, and the census of which numbers a set of
//! captures holds (how loss and duplication are measured).

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pcap_file::pcap::PcapReader;

const MARK: &[u8] = b"s3td-seq:";
const DIGITS: usize = 12;

/// The payload of datagram `n`.
pub fn numbered_payload(n: u64) -> Vec<u8> {
    format!("s3td-seq:{n:0DIGITS$}").into_bytes()
}

/// Sends numbered datagrams `first..first+count` at `rate` per second.
pub fn send_numbered(port: u16, first: u64, count: u64, rate: u64) {
    send_numbered_padded(port, first, count, rate, 0);
}

/// Like [`send_numbered`], each datagram padded with `pad` more bytes.
pub fn send_numbered_padded(port: u16, first: u64, count: u64, rate: u64, pad: usize) {
    // Bound so that the datagrams are not answered with ICMP unreachable.
    let receiver = UdpSocket::bind(("127.0.0.1", port)).ok();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut payload = numbered_payload(first + i);
        payload.resize(payload.len() + pad, b'.');
        socket.send_to(&payload, ("127.0.0.1", port)).unwrap();
    }
    drop(receiver);
}

/// Reads a pcap and returns the sequence numbers of the datagrams in it.
/// Panics if the file is not a valid pcap to its last byte.
pub fn sequence_numbers(path: &Path) -> Vec<u64> {
    let file = std::fs::File::open(path).unwrap();
    let mut reader =
        PcapReader::new(file).unwrap_or_else(|e| panic!("{} is not a pcap: {e}", path.display()));
    let mut numbers = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap_or_else(|e| panic!("{} has a bad record: {e}", path.display()));
        if let Some(n) = find_sequence(&packet.data) {
            numbers.push(n);
        }
    }
    numbers
}

fn find_sequence(data: &[u8]) -> Option<u64> {
    let at = data.windows(MARK.len()).position(|w| w == MARK)?;
    let digits = data.get(at + MARK.len()..at + MARK.len() + DIGITS)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// How many times each sequence number occurs across `files`.
pub fn census(files: &[PathBuf]) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for file in files {
        for n in sequence_numbers(file) {
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    seen
}

/// Asserts that tcpdump itself reads `file` to its end without an error.
pub fn assert_tcpdump_reads(file: &Path) {
    let out = Command::new("tcpdump")
        .args(["-r", file.to_str().unwrap(), "-n", "-q", "-w", "/dev/null"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tcpdump -r {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back_as_its_number() {
        let mut padded = b"headers".to_vec();
        padded.extend(numbered_payload(42));
        padded.extend(b"....");
        assert_eq!(find_sequence(&padded), Some(42));
    }
}
