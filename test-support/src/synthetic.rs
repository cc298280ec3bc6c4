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
