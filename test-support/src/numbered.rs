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
    let smallest = numbered_payload(0).len();
    send_paced(port, first, count, rate, &[smallest + pad]);
}

/// What a paced sending did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sent {
    pub sent: u64,
    pub send_errors: u64,
    pub seconds: f64,
}

/// Pacing granularity: the datagrams due in each slice go back to back,
/// then the sender sleeps. Pacing each datagram alone would busy-wait a
/// whole core at 50,000/s, a core the capture under test needs.
const SLICE: Duration = Duration::from_millis(1);

/// Sends numbered datagrams `first..first+count` at `rate` per second to
/// 127.0.0.1:`port`, their UDP payloads `sizes` bytes long in turn (at
/// least the number's own length). A socket bound to the port takes them,
/// so that they are not answered with ICMP unreachable.
pub fn send_paced(port: u16, first: u64, count: u64, rate: u64, sizes: &[usize]) -> Sent {
    let sink = UdpSocket::bind(("127.0.0.1", port)).ok();
    if let Some(sink) = &sink {
        sink.set_nonblocking(true).unwrap();
    }
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(("127.0.0.1", port)).unwrap();
    let sizes = if sizes.is_empty() { &[0][..] } else { sizes };
    let rate = rate.max(1);
    let mut drained = [0u8; 2048];
    let (mut sent, mut send_errors, mut next) = (0, 0, 0u64);
    let start = Instant::now();
    while next < count {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(count);
        for i in next..due {
            let mut payload = numbered_payload(first + i);
            let size = sizes[(i % sizes.len() as u64) as usize];
            payload.resize(payload.len().max(size), b'.');
            match socket.send(&payload) {
                Ok(_) => sent += 1,
                Err(_) => send_errors += 1,
            }
        }
        next = due.max(next);
        if let Some(sink) = &sink {
            while sink.recv(&mut drained).is_ok() {}
        }
        let next_due = start + Duration::from_secs_f64(next as f64 / rate as f64);
        if let Some(wait) = next_due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait.max(SLICE));
        }
    }
    Sent {
        sent,
        send_errors,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// Reads a pcap and returns the sequence numbers of the datagrams in it.
/// Panics if the file is not a valid pcap to its last byte.
pub fn sequence_numbers(path: &Path) -> Vec<u64> {
    read_sequence_numbers(path).unwrap_or_else(|e| panic!("{e}"))
}

/// Reads a pcap strictly and returns the sequence numbers of the datagrams
/// in it; a file that is not a pcap, or a record that cannot be read, is an
/// error naming the file (a damaged capture, not lost datagrams).
pub fn read_sequence_numbers(path: &Path) -> Result<Vec<u64>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut reader =
        PcapReader::new(file).map_err(|e| format!("{} is not a pcap: {e}", path.display()))?;
    let mut numbers = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.map_err(|e| {
            format!(
                "{} has a bad record after {} numbered datagrams: {e}",
                path.display(),
                numbers.len()
            )
        })?;
        if let Some(n) = find_sequence(&packet.data) {
            numbers.push(n);
        }
    }
    Ok(numbers)
}

/// The sequence number a packet carries, if it is a numbered datagram.
pub fn find_sequence(data: &[u8]) -> Option<u64> {
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
