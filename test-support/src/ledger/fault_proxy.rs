//! A fault-injecting HTTP proxy between the uploader and garage. Like
//! [`crate::s3_proxy`] it handles one request per connection (it adds
//! `Connection: close`), so it knows where each request body starts and
//! ends, and can misbehave in the middle of one. What it does to the next
//! request is its current [`Mode`], switched by the run; every misdeed is
//! counted.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::s3_proxy::{final_response, parse_head, read_head, with_connection_close};

/// What the proxy does to requests now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Reads the request and never answers (until the client gives up).
    Hang,
    /// Passes half of a request body on, then resets both connections.
    Reset,
    /// Holds each request this long before passing it on.
    Delay(Duration),
    /// Passes request bodies at this many bytes a second per connection.
    Throttle(u64),
    /// Answers 503 SlowDown without asking garage.
    SlowDown,
    /// Flips one byte in the middle of each body that carries a SHA-256
    /// checksum (objects and parts): the store must refuse it.
    Flip,
}

/// Requests the proxy misbehaved on, by misdeed.
#[derive(Debug, Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub hung: AtomicU64,
    pub reset: AtomicU64,
    pub delayed: AtomicU64,
    pub throttled: AtomicU64,
    pub slowed_down: AtomicU64,
    pub flipped: AtomicU64,
    /// Connections garage did not accept (stopped or cut off).
    pub upstream_unreachable: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    mode: Mutex<Mode>,
    counts: Counts,
}

/// The running proxy; its threads end with the process.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

/// A hung request is let go after this long at the latest.
const HANG_LIMIT: Duration = Duration::from_secs(120);
/// Garage gets this long to accept a connection (a cut link never does).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence of either side before the proxy gives up a request.
const IDLE_LIMIT: Duration = Duration::from_secs(180);

impl FaultProxy {
    pub fn start(upstream: SocketAddr) -> anyhow::Result<FaultProxy> {
        // A small receive buffer, as a slow link's queue: loopback's would
        // take megabytes at once and hide a throttle from the sender.
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_recv_buffer_size(64 * 1024)?;
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
        socket.listen(1024)?;
        let listener: TcpListener = socket.into();
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            mode: Mutex::new(Mode::Pass),
            counts: Counts::default(),
        });
        let accepting = shared.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let shared = accepting.clone();
                thread::spawn(move || handle(client, &shared));
            }
        });
        Ok(FaultProxy { addr, shared })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self
            .shared
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = mode;
    }

    fn mode(&self) -> Mode {
        mode(&self.shared)
    }

    pub fn counts(&self) -> &Counts {
        &self.shared.counts
    }

    pub fn is_passing(&self) -> bool {
        self.mode() == Mode::Pass
    }
}

fn mode(shared: &Shared) -> Mode {
    *shared.mode.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn handle(mut client: TcpStream, shared: &Shared) {
    let _ = client.set_read_timeout(Some(IDLE_LIMIT));
    let Some((head, rest)) = read_head(&mut client) else {
        return;
    };
    let request = parse_head(&head);
    if request.header("transfer-encoding").is_some() {
        // Not expected from the uploader (every body has a known length).
        return;
    }
    let length: u64 = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let checksummed = request.header("x-amz-checksum-sha256").is_some();
    bump(&shared.counts.requests);
    let mut body = Body {
        pending: rest,
        remaining: length,
        offset: 0,
        flip_at: None,
        stop_at: None,
        bytes_per_second: None,
    };
    match mode(shared) {
        Mode::Pass => {}
        Mode::Hang => {
            bump(&shared.counts.hung);
            hang(&mut client, shared);
            return;
        }
        Mode::SlowDown => {
            bump(&shared.counts.slowed_down);
            let _ = body.copy_to(&mut client, &mut std::io::sink());
            slow_down(&mut client);
            return;
        }
        Mode::Delay(delay) => {
            bump(&shared.counts.delayed);
            thread::sleep(delay);
        }
        Mode::Throttle(rate) => {
            if length > 0 {
                bump(&shared.counts.throttled);
                body.bytes_per_second = Some(rate);
            }
        }
        Mode::Reset => {
            if length > 0 {
                bump(&shared.counts.reset);
                body.stop_at = Some(length / 2);
            }
        }
        Mode::Flip => {
            if length > 0 && checksummed {
                bump(&shared.counts.flipped);
                body.flip_at = Some(length / 2);
            }
        }
    }
    let mut server = match TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT) {
        Ok(server) => server,
        Err(e) => {
            bump(&shared.counts.upstream_unreachable);
            if e.kind() == std::io::ErrorKind::TimedOut {
                // A cut link: the uploader must see silence, as it would
                // without the proxy, until its own timeout gives up.
                hang(&mut client, shared);
            } else {
                // Refused (garage stopped): passed on as a reset.
                let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
            }
            return;
        }
    };
    let _ = server.set_read_timeout(Some(IDLE_LIMIT));
    let _ = server.set_write_timeout(Some(IDLE_LIMIT));
    if server.write_all(&with_connection_close(&head)).is_err() {
        return;
    }
    match body.copy_to(&mut client, &mut server) {
        Ok(Copied::Whole) => {}
        Ok(Copied::Stopped) => {
            // An abortive close: RST to both sides, mid-body.
            for stream in [&client, &server] {
                let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
            }
            return;
        }
        Err(_) => return,
    }
    let mut response = Vec::new();
    let _ = server.read_to_end(&mut response);
    let _ = client.write_all(&with_connection_close(final_response(&response)));
    let _ = client.shutdown(Shutdown::Both);
}

/// Holds the connection without answering until the client closes it, the
/// hang ends and the limit passes, whichever is first; the body is read
/// and thrown away so the client is not blocked on a full window.
fn hang(client: &mut TcpStream, shared: &Shared) {
    let started = Instant::now();
    let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buffer = [0u8; 16 * 1024];
    while started.elapsed() < HANG_LIMIT {
        match client.read(&mut buffer) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
        // A request that came in during the hang stays hung a while after
        // it (a real hung server does not wake up for the old requests).
        if mode(shared) != Mode::Hang && started.elapsed() > Duration::from_secs(30) {
            return;
        }
    }
}

fn slow_down(client: &mut TcpStream) {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>S3TDCHAOS</RequestId></Error>";
    let _ = write!(
        client,
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.shutdown(Shutdown::Both);
}

/// A request body on its way through, and what to do to it.
#[derive(Debug)]
struct Body {
    /// Body bytes read with the head.
    pending: Vec<u8>,
    remaining: u64,
    offset: u64,
    flip_at: Option<u64>,
    stop_at: Option<u64>,
    bytes_per_second: Option<u64>,
}

enum Copied {
    Whole,
    /// Stopped at `stop_at` on purpose.
    Stopped,
}

impl Body {
    fn copy_to(&mut self, from: &mut TcpStream, to: &mut impl Write) -> std::io::Result<Copied> {
        let started = Instant::now();
        let mut buffer = vec![0u8; 16 * 1024];
        let pending = std::mem::take(&mut self.pending);
        let mut first = Some(pending).filter(|p| !p.is_empty());
        while self.remaining > 0 {
            let mut chunk = match first.take() {
                Some(p) => p,
                None => {
                    let want = usize::try_from(self.remaining.min(buffer.len() as u64))
                        .unwrap_or(buffer.len());
                    let n = from.read(&mut buffer[..want])?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    buffer[..n].to_vec()
                }
            };
            chunk.truncate(usize::try_from(self.remaining).unwrap_or(chunk.len()));
            let end = self.offset + chunk.len() as u64;
            if let Some(stop) = self.stop_at
                && end > stop
            {
                let keep = usize::try_from(stop - self.offset).unwrap_or(0);
                to.write_all(&chunk[..keep])?;
                return Ok(Copied::Stopped);
            }
            if let Some(at) = self.flip_at
                && (self.offset..end).contains(&at)
            {
                let index = usize::try_from(at - self.offset).unwrap_or(0);
                chunk[index] ^= 0xff;
            }
            to.write_all(&chunk)?;
            self.offset = end;
            self.remaining -= chunk.len() as u64;
            if let Some(rate) = self.bytes_per_second {
                let due = started + Duration::from_secs_f64(self.offset as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
            }
        }
        Ok(Copied::Whole)
    }
}
