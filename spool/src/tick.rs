//! The launcher's tick: one small UDP datagram a second on the loopback
//! interface, which the capture filter always admits.
//!
//! tcpdump rotates its `-G` files only when a packet arrives, so with a quiet
//! filter (only resets, only DNS) a file could stay open for hours. The tick
//! gives it a packet to rotate on every second, and gives the launcher a
//! heartbeat to watch: a tcpdump that no longer writes ticks has stalled.
//!
//! Every capture therefore holds about one tick a second: IPv4 UDP from
//! 127.0.0.1 to 127.0.0.1 whose payload starts with [`TICK_MAGIC`]. To leave
//! them out when reading: the BPF filter `not (`[`TICK_FILTER`]`)`, or the
//! Wireshark display filter in [`TICK_DISPLAY_FILTER`].

/// First bytes of every tick's payload: `s3tdtick`.
pub const TICK_MAGIC: [u8; 8] = *b"s3tdtick";

/// A BPF expression that matches the ticks and nothing else a node sends.
pub const TICK_FILTER: &str = "ip and udp and src host 127.0.0.1 and dst host 127.0.0.1 and udp[8:4] = 0x73337464 and udp[12:4] = 0x7469636b";

/// The Wireshark/tshark display filter for the ticks.
pub const TICK_DISPLAY_FILTER: &str = "ip.src == 127.0.0.1 && ip.dst == 127.0.0.1 && udp && udp.payload[0:8] == 73:33:74:64:74:69:63:6b";

/// How often the launcher sends a tick.
pub const TICK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a UDP payload is a tick's.
pub fn is_tick_payload(payload: &[u8]) -> bool {
    payload.starts_with(&TICK_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_and_magic_agree() {
        let hex = |bytes: &[u8]| {
            let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{digits}")
        };
        let expected = format!(
            "udp[8:4] = {} and udp[12:4] = {}",
            hex(&TICK_MAGIC[..4]),
            hex(&TICK_MAGIC[4..])
        );
        assert!(
            TICK_FILTER.ends_with(&expected),
            "{TICK_FILTER} vs {expected}"
        );
        assert!(is_tick_payload(b"s3tdtick 1"));
        assert!(!is_tick_payload(b"s3td-seq:000000000001"));
    }
}
