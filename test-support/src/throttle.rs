//! A bandwidth-limiting TCP proxy on loopback, between the uploader and
//! garage: what the uploader sends is passed on at `bytes_per_second`, what
//! garage answers passes at full speed. A congested node link, in the test.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Starts the proxy; returns the address to send to.
pub fn start(upstream: SocketAddr, bytes_per_second: u64) -> SocketAddr {
    // A small receive buffer, as a slow link's queue: loopback's would take
    // megabytes at once and hide the link's speed from the sender.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(16).unwrap();
    let listener: TcpListener = socket.into();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            let (client_rx, server_tx) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || pipe(client_rx, server_tx, Some(bytes_per_second)));
            thread::spawn(move || pipe(server, client, None));
        }
    });
    addr
}

fn pipe(mut from: TcpStream, mut to: TcpStream, limit: Option<u64>) {
    // Small reads so that the rate is smooth, not bursts of a socket buffer.
    let mut buffer = [0u8; 4096];
    let start = Instant::now();
    let mut passed: u64 = 0;
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(rate) = limit {
            passed += n as u64;
            let due = start + Duration::from_secs_f64(passed as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
