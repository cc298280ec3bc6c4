//! The mark the uploader puts on its own packets, so that the capture side
//! can leave them out.
//!
//! The pod shares the node's network namespace: a capture on `any` sees the
//! uploader sending the previous capture to S3. Without a mark, capture N
//! holds capture N-1 in full and captures grow without end.

/// DSCP 1, "Lower Effort" (RFC 8622): a per-hop behaviour that, where it is
/// honoured at all, only lowers priority. It changes no route and no
/// firewall decision.
pub const UPLOAD_DSCP: u8 = 1;

/// [`UPLOAD_DSCP`] as the whole IPv4 TOS byte (`IP_TOS`) or IPv6 traffic
/// class (`IPV6_TCLASS`): the DSCP is the upper six bits, ECN the lower two.
pub const UPLOAD_TOS: u8 = UPLOAD_DSCP << 2;

/// A BPF expression for the packets carrying the mark: the DSCP in the
/// IPv4 TOS byte, or in the IPv6 traffic class (bits 4..12 of the header's
/// first two bytes), whatever their protocol or destination.
pub fn upload_mark_filter() -> String {
    let tos = UPLOAD_TOS;
    let tclass = u16::from(UPLOAD_TOS) << 4;
    format!("(ip and (ip[1] & 0xfc) == {tos:#x}) or (ip6 and (ip6[0:2] & 0xfc0) == {tclass:#x})")
}

/// A BPF expression for the uploader's own packets: marked, TCP, to the S3
/// endpoint's port. The launcher's default filter leaves these out.
///
/// The mark alone is not enough to go by: any program may set DSCP 1 (RFC
/// 8622 lower-effort traffic does), and it would vanish from the captures;
/// a pod could hide its traffic that way. Narrowed to TCP to the port the
/// uploader sends to, what can still hide is marked TCP to that port.
pub fn upload_connection_filter(s3_port: u16) -> String {
    format!("tcp dst port {s3_port} and ({})", upload_mark_filter())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tos_byte_is_dscp_le() {
        assert_eq!(UPLOAD_TOS, 0x04);
    }

    #[test]
    fn the_connection_filter_is_the_mark_on_tcp_to_the_s3_port_only() {
        assert_eq!(
            upload_connection_filter(443),
            format!("tcp dst port 443 and ({})", upload_mark_filter())
        );
    }
}
