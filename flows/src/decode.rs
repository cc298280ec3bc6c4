//! From a pcap record to what the flow table needs: addresses, ports and
//! the few TCP, DNS and ICMP fields it counts. Parsing is `etherparse`'s
//! (lax, so a record cut by the snaplen still yields its headers); only the
//! link-layer headers etherparse does not know (Linux cooked v2, BSD
//! loopback) are stepped over here.

use std::net::IpAddr;

use etherparse::{EtherType, IpNumber, LaxIpSlice, LaxNetSlice, LaxSlicedPacket, TransportSlice};

/// Link types this module decodes (pcap LINKTYPE_* values).
pub const ETHERNET: u32 = 1;
pub const NULL: u32 = 0;
pub const RAW: u32 = 101;
/// Some systems' DLT_RAW values, written as link type as-is by old libpcaps.
pub const RAW_12: u32 = 12;
pub const RAW_14: u32 = 14;
pub const LINUX_SLL: u32 = 113;
pub const IPV4: u32 = 228;
pub const IPV6: u32 = 229;
pub const LINUX_SLL2: u32 = 276;

/// Whether `link_type` is one the index understands.
pub fn supported(link_type: u32) -> bool {
    matches!(
        link_type,
        ETHERNET | NULL | RAW | RAW_12 | RAW_14 | LINUX_SLL | IPV4 | IPV6 | LINUX_SLL2
    )
}

/// The parts of one IP packet the flow table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub detail: Detail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    None,
    Tcp(Tcp),
    /// A DNS header (UDP port 53 either side).
    Dns {
        id: u16,
        response: bool,
        rcode: u8,
    },
    /// An ICMP error quoting a packet of another flow.
    IcmpError {
        frag_needed: bool,
        quoted: Quoted,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcp {
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub ack_flag: bool,
    pub fin: bool,
    pub rst: bool,
    pub window: u16,
    /// Payload length on the wire (including bytes the snaplen cut off).
    pub len: u32,
}

/// The flow an ICMP error is about, from the packet it quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;
const DNS_PORT: u16 = 53;

/// Decodes one record; `None` when it holds no IP packet (ARP, a link type
/// not supported, a header cut short).
pub fn decode(link_type: u32, data: &[u8], original_len: u32) -> Option<Packet> {
    let sliced = match link_type {
        ETHERNET => LaxSlicedPacket::from_ethernet(data).ok()?,
        LINUX_SLL => {
            let ether_type = u16::from_be_bytes([*data.get(14)?, *data.get(15)?]);
            LaxSlicedPacket::from_ether_type(EtherType(ether_type), data.get(16..)?)
        }
        LINUX_SLL2 => {
            let ether_type = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
            LaxSlicedPacket::from_ether_type(EtherType(ether_type), data.get(20..)?)
        }
        NULL => LaxSlicedPacket::from_ip(data.get(4..)?).ok()?,
        RAW | RAW_12 | RAW_14 | IPV4 | IPV6 => LaxSlicedPacket::from_ip(data).ok()?,
        _ => return None,
    };
    let (src, dst, proto) = match sliced.net.as_ref()? {
        LaxNetSlice::Ipv4(ip) => {
            let h = ip.header();
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                ip.payload().ip_number,
            )
        }
        LaxNetSlice::Ipv6(ip) => {
            let h = ip.header();
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                ip.payload().ip_number,
            )
        }
        LaxNetSlice::Arp(_) => return None,
    };
    // Bytes the snaplen cut off are the tail of the frame: the payload.
    let cut =
        u32::try_from(original_len as usize - data.len().min(original_len as usize)).unwrap_or(0);
    let mut packet = Packet {
        proto: proto.0,
        src,
        dst,
        sport: 0,
        dport: 0,
        detail: Detail::None,
    };
    match sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            packet.sport = tcp.source_port();
            packet.dport = tcp.destination_port();
            packet.detail = Detail::Tcp(Tcp {
                seq: tcp.sequence_number(),
                ack: tcp.acknowledgment_number(),
                syn: tcp.syn(),
                ack_flag: tcp.ack(),
                fin: tcp.fin(),
                rst: tcp.rst(),
                window: tcp.window_size(),
                len: u32::try_from(tcp.payload().len()).unwrap_or(u32::MAX) + cut,
            });
        }
        Some(TransportSlice::Udp(udp)) => {
            packet.sport = udp.source_port();
            packet.dport = udp.destination_port();
            if packet.sport == DNS_PORT || packet.dport == DNS_PORT {
                let p = udp.payload();
                if p.len() >= 12 {
                    // The DNS header: id, then QR (top bit) and RCODE (low 4 bits).
                    packet.detail = Detail::Dns {
                        id: u16::from_be_bytes([p[0], p[1]]),
                        response: p[2] & 0x80 != 0,
                        rcode: p[3] & 0x0f,
                    };
                }
            }
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            // 3: destination unreachable; code 4: fragmentation needed.
            if icmp.type_u8() == 3
                && let Some(quoted) = quoted(icmp.payload())
            {
                packet.detail = Detail::IcmpError {
                    frag_needed: icmp.code_u8() == 4,
                    quoted,
                };
            }
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            // 1: destination unreachable; 2: packet too big. Both quote the
            // offending packet after the 8-byte ICMPv6 header.
            let t = icmp.type_u8();
            if (t == 1 || t == 2)
                && let Some(quoted) = icmp.slice().get(8..).and_then(quoted)
            {
                packet.detail = Detail::IcmpError {
                    frag_needed: t == 2,
                    quoted,
                };
            }
        }
        None => {}
    }
    Some(packet)
}

/// The flow of the packet an ICMP error quotes: its IP header and (at
/// least) the first 8 bytes after it, where TCP and UDP keep their ports.
fn quoted(bytes: &[u8]) -> Option<Quoted> {
    let (ip, _) = LaxIpSlice::from_slice(bytes).ok()?;
    let payload = ip.payload();
    let proto = payload.ip_number;
    let ports = |p: &[u8]| -> Option<(u16, u16)> {
        Some((
            u16::from_be_bytes([*p.first()?, *p.get(1)?]),
            u16::from_be_bytes([*p.get(2)?, *p.get(3)?]),
        ))
    };
    let (sport, dport) = if proto == IpNumber::TCP || proto == IpNumber::UDP {
        ports(payload.payload)?
    } else {
        (0, 0)
    };
    Some(Quoted {
        proto: proto.0,
        src: ip.source_addr(),
        dst: ip.destination_addr(),
        sport,
        dport,
    })
}

/// The protocol's name as the index writes it.
pub fn proto_name(proto: u8) -> String {
    match proto {
        TCP => "tcp".to_owned(),
        UDP => "udp".to_owned(),
        ICMP => "icmp".to_owned(),
        ICMPV6 => "icmpv6".to_owned(),
        n => n.to_string(),
    }
}
