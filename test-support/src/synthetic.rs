//! Capture-like files for the upload benchmark: valid pcaps of Ethernet,
//! IPv4 and TCP frames across many flows, with random (incompressible)
//! payloads, so that the uploader's pcap check and flow index do the work
//! they do on a real capture.

use std::io::{Read, Write};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

/// Payload bytes per frame: a full-size segment, as a bulk transfer has.
const PAYLOAD: usize = 1_448;

/// Writes a pcap of at least `bytes` bytes (it ends with a whole frame)
/// to `out`: TCP segments of `flows` connections in turn, 20 µs apart,
/// starting at `start_secs` (Unix time). Returns the number of packets.
pub fn write_capture(
    out: impl Write,
    bytes: u64,
    flows: u32,
    start_secs: u64,
) -> std::io::Result<u64> {
    let mut writer =
        PcapWriter::with_header(out, PcapHeader::default()).map_err(std::io::Error::other)?;
    let mut random = std::fs::File::open("/dev/urandom")?;
    let mut payload = vec![0u8; PAYLOAD * 64];
    let mut frame = Vec::with_capacity(PAYLOAD + 64);
    let flows = flows.max(1);
    let mut sequence = vec![1u32; flows as usize];
    let (mut written, mut packets) = (24u64, 0u64);
    while written < bytes {
        let slot = (packets % 64) as usize;
        if slot == 0 {
            random.read_exact(&mut payload)?;
        }
        let flow = (packets % u64::from(flows)) as u32;
        let client = [10, 1, (flow >> 8) as u8, flow as u8];
        let port = 32_768 + (flow % 28_000) as u16;
        let seq = &mut sequence[flow as usize];
        frame.clear();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(client, [10, 2, 0, 1], 64)
            .tcp(port, 443, *seq, 65_535)
            .ack(1)
            .write(&mut frame, &payload[slot * PAYLOAD..(slot + 1) * PAYLOAD])
            .map_err(std::io::Error::other)?;
        *seq = seq.wrapping_add(PAYLOAD as u32);
        let at = Duration::from_secs(start_secs) + Duration::from_micros(packets * 20);
        let len = frame.len() as u32;
        writer
            .write_packet(&PcapPacket::new(at, len, &frame))
            .map_err(std::io::Error::other)?;
        written += 16 + u64::from(len);
        packets += 1;
    }
    writer.into_writer().flush()?;
    Ok(packets)
}

/// The traffic of a capture of many distinct flows ([`write_many_flows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowShape {
    /// One UDP datagram per flow, from ever new client address and port
    /// (what random source ports or a busy resolver's clients make).
    Udp,
    /// SYNs from one scanner to every port of many hosts: the odd ones
    /// answered by RST/ACK (closed port), the even ones never (filtered).
    PortScan,
}

impl FlowShape {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "udp" => Some(Self::Udp),
            "port-scan" => Some(Self::PortScan),
            _ => None,
        }
    }
}

/// Client `i` of a many-flows capture: a distinct address and port each.
fn many_flows_client(i: u64) -> ([u8; 4], u16) {
    let host = i / 50_000;
    (
        [10, 64 + (host >> 8) as u8, host as u8, 1],
        10_000 + (i % 50_000) as u16,
    )
}

/// Writes a pcap of `flows` distinct flows of `shape` to `out`, spread
/// evenly over `seconds` from `start_secs` (Unix time). Returns the number
/// of packets.
pub fn write_many_flows(
    out: impl Write,
    flows: u64,
    shape: FlowShape,
    start_secs: u64,
    seconds: u64,
) -> std::io::Result<u64> {
    let mut writer =
        PcapWriter::with_header(out, PcapHeader::default()).map_err(std::io::Error::other)?;
    let mut frame = Vec::with_capacity(128);
    let mut packets = 0u64;
    let step_ns = seconds.max(1) * 1_000_000_000 / flows.max(1);
    let mut write = |frame: &[u8], at: Duration| -> std::io::Result<()> {
        packets += 1;
        writer
            .write_packet(&PcapPacket::new(at, frame.len() as u32, frame))
            .map(drop)
            .map_err(std::io::Error::other)
    };
    for i in 0..flows {
        let at = Duration::from_secs(start_secs) + Duration::from_nanos(i * step_ns);
        frame.clear();
        match shape {
            FlowShape::Udp => {
                let (client, port) = many_flows_client(i);
                etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                    .ipv4(client, [10, 2, 0, 1], 64)
                    .udp(port, 8125)
                    .write(&mut frame, &i.to_be_bytes())
                    .map_err(std::io::Error::other)?;
                write(&frame, at)?;
            }
            FlowShape::PortScan => {
                let host = i / 65_535;
                let target = [10, 3, (host >> 8) as u8, host as u8];
                let port = (i % 65_535) as u16 + 1;
                let scanner = ([10, 9, 9, 9], 40_000);
                etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                    .ipv4(scanner.0, target, 64)
                    .tcp(scanner.1, port, i as u32, 1_024)
                    .syn()
                    .write(&mut frame, &[])
                    .map_err(std::io::Error::other)?;
                write(&frame, at)?;
                if i % 2 == 1 {
                    frame.clear();
                    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
                        .ipv4(target, scanner.0, 64)
                        .tcp(port, scanner.1, 0, 0)
                        .rst()
                        .ack((i as u32).wrapping_add(1))
                        .write(&mut frame, &[])
                        .map_err(std::io::Error::other)?;
                    write(&frame, at + Duration::from_micros(50))?;
                }
            }
        }
    }
    writer.into_writer().flush()?;
    Ok(packets)
}

/// One connection attempt refused: a SYN from `client` to `server` at
/// `at` (since the Unix epoch), answered by RST/ACK a millisecond later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub at: Duration,
    pub client: ([u8; 4], u16),
    pub server: ([u8; 4], u16),
}

/// A pcap (Ethernet) of refused connection attempts, in the order given.
pub fn refused_connections(attempts: &[Refused]) -> std::io::Result<Vec<u8>> {
    let mut writer = PcapWriter::with_header(Vec::new(), PcapHeader::default())
        .map_err(std::io::Error::other)?;
    for a in attempts {
        let mut syn = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(a.client.0, a.server.0, 64)
            .tcp(a.client.1, a.server.1, 1000, 64_240)
            .syn()
            .write(&mut syn, &[])
            .map_err(std::io::Error::other)?;
        let mut rst = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
            .ipv4(a.server.0, a.client.0, 64)
            .tcp(a.server.1, a.client.1, 0, 0)
            .rst()
            .ack(1001)
            .write(&mut rst, &[])
            .map_err(std::io::Error::other)?;
        for (frame, at) in [(syn, a.at), (rst, a.at + Duration::from_millis(1))] {
            writer
                .write_packet(&PcapPacket::new(at, frame.len() as u32, &frame))
                .map_err(std::io::Error::other)?;
        }
    }
    Ok(writer.into_writer())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synthetic_capture_is_a_whole_pcap_of_the_asked_size() {
        let mut out = Vec::new();
        let packets = write_capture(&mut out, 200_000, 7, 1_796_000_000).unwrap();
        assert!(
            out.len() >= 200_000 && out.len() < 200_000 + 1_600,
            "{}",
            out.len()
        );
        let mut reader = pcap_file::pcap::PcapReader::new(out.as_slice()).unwrap();
        let mut read = 0;
        while let Some(packet) = reader.next_packet() {
            let packet = packet.unwrap();
            let parsed = etherparse::SlicedPacket::from_ethernet(&packet.data).unwrap();
            assert!(matches!(
                parsed.transport,
                Some(etherparse::TransportSlice::Tcp(_))
            ));
            read += 1;
        }
        assert_eq!(read, packets);
    }
}
