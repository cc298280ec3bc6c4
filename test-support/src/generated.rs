//! Generated captures for the property tests of every pcap reader the
//! project has (the uploader's check and flow index, `captures explain`
//! and `fetch --merge`): from random bytes to well-formed frames under
//! every link type the index decodes, then damaged in one place as a torn
//! write, a flipped bit or trailing junk would damage them.

use std::time::Duration;

use etherparse::{Icmpv4Type, PacketBuilder, icmpv4::DestUnreachableHeader};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

/// The link types the flow index decodes (pcap LINKTYPE_* values), and
/// one it does not (147, user-defined).
pub const LINK_TYPES: [u32; 10] = [1, 0, 101, 12, 14, 113, 228, 229, 276, 147];

/// What is inside the IP packet of a generated frame.
#[derive(Debug, Clone)]
enum Inner {
    Tcp {
        flags: u8,
        seq: u32,
        ack: u32,
        window: u16,
    },
    /// To or from port 53, so the DNS header is read.
    Dns {
        to_server: bool,
    },
    /// An ICMP unreachable quoting a UDP packet.
    Unreachable {
        code: u8,
    },
    Udp,
}

fn inner() -> impl Strategy<Value = Inner> {
    prop_oneof![
        (any::<u8>(), any::<u32>(), any::<u32>(), any::<u16>()).prop_map(
            |(flags, seq, ack, window)| Inner::Tcp {
                flags,
                seq,
                ack,
                window
            }
        ),
        any::<bool>().prop_map(|to_server| Inner::Dns { to_server }),
        (0u8..16).prop_map(|code| Inner::Unreachable { code }),
        Just(Inner::Udp),
    ]
}

/// A well-formed IPv4 or IPv6 packet from a handful of hosts and ports, so
/// that generated records meet in flows.
fn ip_packet() -> impl Strategy<Value = (bool, Vec<u8>)> {
    (
        any::<bool>(),
        0u8..4,
        0u8..4,
        select(vec![53u16, 80, 443, 40_000, 40_001]),
        inner(),
        vec(any::<u8>(), 0..80),
    )
        .prop_map(|(v6, a, b, port, inner, payload)| {
            let builder = if v6 {
                let host = |n: u8| {
                    let mut addr = [0u8; 16];
                    addr[0] = 0xfd;
                    addr[15] = n;
                    addr
                };
                PacketBuilder::ip(etherparse::IpHeaders::Ipv6(
                    etherparse::Ipv6Header {
                        source: host(a),
                        destination: host(b),
                        hop_limit: 64,
                        ..Default::default()
                    },
                    Default::default(),
                ))
            } else {
                PacketBuilder::ip(etherparse::IpHeaders::Ipv4(
                    etherparse::Ipv4Header::new(
                        0,
                        64,
                        etherparse::IpNumber::UDP,
                        [10, 0, 0, a],
                        [10, 0, 0, b],
                    )
                    .unwrap_or_default(),
                    Default::default(),
                ))
            };
            let mut out = Vec::new();
            let written = match inner {
                Inner::Tcp {
                    flags,
                    seq,
                    ack,
                    window,
                } => {
                    let mut tcp = builder.tcp(port, 40_000, seq, window);
                    if flags & 1 != 0 {
                        tcp = tcp.fin();
                    }
                    if flags & 2 != 0 {
                        tcp = tcp.syn();
                    }
                    if flags & 4 != 0 {
                        tcp = tcp.rst();
                    }
                    if flags & 16 != 0 {
                        tcp = tcp.ack(ack);
                    }
                    tcp.write(&mut out, &payload)
                }
                Inner::Dns { to_server } => {
                    let (from, to) = if to_server {
                        (40_000, 53)
                    } else {
                        (53, 40_000)
                    };
                    builder.udp(from, to).write(&mut out, &payload)
                }
                Inner::Unreachable { code } if !v6 => {
                    let quoted = {
                        let mut q = Vec::new();
                        let _ = PacketBuilder::ipv4([10, 0, 0, b], [10, 0, 0, a], 64)
                            .udp(40_000, port)
                            .write(&mut q, &payload);
                        q
                    };
                    let unreachable = DestUnreachableHeader::from_values(code, 1500)
                        .unwrap_or(DestUnreachableHeader::Network);
                    builder
                        .icmpv4(Icmpv4Type::DestinationUnreachable(unreachable))
                        .write(&mut out, &quoted)
                }
                Inner::Unreachable { .. } | Inner::Udp => {
                    builder.udp(port, 40_000).write(&mut out, &payload)
                }
            };
            // A builder refusing its input leaves random bytes in the record.
            if written.is_err() {
                out = payload;
            }
            (v6, out)
        })
}

/// The link-layer header of `link_type` for an IP packet.
fn link_header(link_type: u32, v6: bool) -> Vec<u8> {
    let ether_type: [u8; 2] = if v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
    match link_type {
        1 => [
            [2, 0, 0, 0, 0, 1].as_slice(),
            &[2, 0, 0, 0, 0, 2],
            &ether_type,
        ]
        .concat(),
        0 => {
            // BSD loopback: the address family in the writer's byte order.
            let family: u32 = if v6 { 30 } else { 2 };
            family.to_ne_bytes().to_vec()
        }
        113 => [
            [0, 0, 0, 1, 0, 6].as_slice(),
            &[2, 0, 0, 0, 0, 1, 0, 0],
            &ether_type,
        ]
        .concat(),
        276 => [
            ether_type.as_slice(),
            &[0, 0],
            &[0, 0, 0, 1],
            &[0, 1, 0, 6],
            &[2, 0, 0, 0, 0, 1, 0, 0],
        ]
        .concat(),
        _ => Vec::new(),
    }
}

/// One record's bytes under `link_type`: mostly a well-formed frame,
/// sometimes random bytes.
pub fn frame(link_type: u32) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => ip_packet().prop_map(move |(v6, packet)| {
            let mut frame = link_header(link_type, v6);
            frame.extend(packet);
            frame
        }),
        1 => vec(any::<u8>(), 0..120),
    ]
}

fn header(link_type: u32) -> impl Strategy<Value = PcapHeader> {
    (any::<bool>(), any::<bool>(), 40u32..70_000).prop_map(move |(big, nano, snaplen)| PcapHeader {
        endianness: if big {
            Endianness::Big
        } else {
            Endianness::Little
        },
        ts_resolution: if nano {
            TsResolution::NanoSecond
        } else {
            TsResolution::MicroSecond
        },
        snaplen,
        datalink: DataLink::from(link_type),
        ..PcapHeader::default()
    })
}

/// A whole capture of up to 24 records under one link type: times that
/// mostly advance (sometimes by minutes, sometimes backwards), frames cut
/// to the snaplen or to a random length, as tcpdump's `-s` cuts them.
pub fn whole_capture() -> impl Strategy<Value = Vec<u8>> {
    select(LINK_TYPES.to_vec()).prop_flat_map(|link_type| {
        (
            header(link_type),
            vec(
                (frame(link_type), any::<Option<Index>>(), -2i64..400_000_000),
                0..24,
            ),
        )
            .prop_map(|(header, records)| {
                let snaplen = header.snaplen as usize;
                let Ok(mut writer) = PcapWriter::with_header(Vec::new(), header) else {
                    return Vec::new();
                };
                let mut at = Duration::from_secs(1_795_000_000);
                for (frame, cut, step_us) in records {
                    at = match u64::try_from(step_us) {
                        Ok(us) => at + Duration::from_micros(us),
                        Err(_) => at.saturating_sub(Duration::from_secs(1)),
                    };
                    let keep = cut
                        .map_or(frame.len(), |c| c.index(frame.len() + 1))
                        .min(snaplen);
                    let original = u32::try_from(frame.len()).unwrap_or(u32::MAX);
                    let packet = PcapPacket::new(at, original, &frame[..keep]);
                    if writer.write_packet(&packet).is_err() {
                        break;
                    }
                }
                writer.into_writer()
            })
    })
}

/// How a whole capture is damaged.
#[derive(Debug, Clone)]
enum Damage {
    None,
    /// One byte XORed with a non-zero mask.
    Flip(Index, u8),
    /// Cut short, as a crash mid-write leaves it.
    Truncate(Index),
    /// Random bytes after the last record.
    Junk(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        2 => Just(Damage::None),
        2 => (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| Damage::Flip(at, mask)),
        1 => any::<Index>().prop_map(Damage::Truncate),
        1 => vec(any::<u8>(), 1..40).prop_map(Damage::Junk),
    ]
}

/// Anything a pcap reader may be given: random bytes, a pcap header then
/// random bytes, or a whole capture intact or damaged in one place.
pub fn capture_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..400),
        1 => (select(LINK_TYPES.to_vec()).prop_flat_map(header), vec(any::<u8>(), 0..400))
            .prop_map(|(header, tail)| {
                let mut bytes = PcapWriter::with_header(Vec::new(), header)
                    .map(PcapWriter::into_writer)
                    .unwrap_or_default();
                bytes.extend(tail);
                bytes
            }),
        6 => (whole_capture(), damage()).prop_map(|(mut bytes, damage)| {
            match damage {
                Damage::None => {}
                Damage::Flip(at, mask) if !bytes.is_empty() => {
                    let at = at.index(bytes.len());
                    bytes[at] ^= mask;
                }
                Damage::Flip(..) => {}
                Damage::Truncate(at) => bytes.truncate(at.index(bytes.len() + 1)),
                Damage::Junk(junk) => bytes.extend(junk),
            }
            bytes
        }),
    ]
}

/// Split points for feeding bytes in chunks, as reads return them.
pub fn chunk_cuts() -> impl Strategy<Value = Vec<Index>> {
    vec(any::<Index>(), 0..8)
}

/// `bytes` split at `cuts` (each an index into the bytes).
pub fn chunks<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.extend([0, bytes.len()]);
    at.sort_unstable();
    at.windows(2).map(|pair| &bytes[pair[0]..pair[1]]).collect()
}
