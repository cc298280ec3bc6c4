//! Sends the launcher's tick ([`spool::tick`]): one datagram a second from
//! 127.0.0.1 to itself on the loopback interface.
//!
//! The socket sends to its own address, so no other process is involved
//! and nothing answers (no ICMP "port unreachable" in the capture); what
//! arrives is read and thrown away.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::UdpSocket;

use crate::errors::LaunchError;

#[derive(Debug)]
pub struct Ticker {
    socket: UdpSocket,
    own: SocketAddr,
    sent: u64,
}

impl Ticker {
    pub async fn bind() -> Result<Self, LaunchError> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(LaunchError::Tick)?;
        let own = socket.local_addr().map_err(LaunchError::Tick)?;
        Ok(Self {
            socket,
            own,
            sent: 0,
        })
    }

    /// Sends one tick and discards the ticks that came back.
    pub fn tick(&mut self) {
        let mut scratch = [0u8; 64];
        while self.socket.try_recv(&mut scratch).is_ok() {}
        self.sent += 1;
        let mut payload = spool::tick::TICK_MAGIC.to_vec();
        payload.extend_from_slice(format!(" {}\n", self.sent).as_bytes());
        if let Err(e) = self.socket.try_send_to(&payload, self.own) {
            tracing::debug!(error = %e, "could not send a tick");
        }
    }
}
