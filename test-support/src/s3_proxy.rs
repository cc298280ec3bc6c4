//! A recording HTTP proxy between the uploader and garage, on loopback.
//!
//! It records the head of every request the uploader sends (method, target,
//! headers), and answers in one of two ways:
//! - [`Answer::Forward`]: passes the request to garage and its answer back,
//!   one request per connection (it adds `Connection: close` both ways, so
//!   it never has to find where an answer ends). With `bucket_owner`, it
//!   first does what S3 does and garage does not: a request whose
//!   `x-amz-expected-bucket-owner` names another account gets 403
//!   `AccessDenied`.
//! - [`Answer::DenyAll`]: answers every request 403 `AccessDenied` with the
//!   given message, as S3 does for a role without permission.
//! - [`Answer::DenyKeys`]: answers 403 `AccessDenied` to requests whose key
//!   contains `containing` (as a bucket policy denying one prefix would),
//!   and forwards every other request like `Forward`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

#[derive(Debug, Clone)]
pub enum Answer {
    Forward {
        upstream: SocketAddr,
        bucket_owner: Option<String>,
    },
    DenyAll {
        message: String,
    },
    DenyKeys {
        upstream: SocketAddr,
        containing: String,
    },
}

/// The head of one request, as the uploader sent it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The S3 operation, told by method and query (path-style requests).
    pub fn operation(&self) -> &'static str {
        let query = self.target.split_once('?').map_or("", |(_, q)| q);
        let has = |param: &str| {
            query
                .split('&')
                .any(|p| p.split_once('=').map_or(p, |(k, _)| k) == param)
        };
        match self.method.as_str() {
            "GET" if has("uploadId") => "ListParts",
            "PUT" if has("partNumber") => "UploadPart",
            "PUT" => "PutObject",
            "POST" if has("uploads") => "CreateMultipartUpload",
            "POST" if has("uploadId") => "CompleteMultipartUpload",
            "DELETE" if has("uploadId") => "AbortMultipartUpload",
            _ => "other",
        }
    }

    /// The object key (path-style: after the bucket).
    pub fn key(&self) -> &str {
        let path = self
            .target
            .split_once('?')
            .map_or(&*self.target, |(p, _)| p);
        path.trim_start_matches('/')
            .split_once('/')
            .map_or("", |(_, key)| key)
    }
}

/// A running proxy; stops accepting on drop.
#[derive(Debug)]
pub struct S3Proxy {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
}

impl S3Proxy {
    pub fn start(answer: Answer) -> S3Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (requests, stop) = (requests.clone(), stop.clone());
            thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let (requests, answer) = (requests.clone(), answer.clone());
                    thread::spawn(move || handle(client, &answer, &requests));
                }
            });
        }
        S3Proxy {
            addr,
            requests,
            stop,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for S3Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn handle(mut client: TcpStream, answer: &Answer, requests: &Mutex<Vec<Recorded>>) {
    let Some((head, rest)) = read_head(&mut client) else {
        return;
    };
    let recorded = parse_head(&head);
    let length: usize = recorded
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        recorded.header("transfer-encoding").is_none(),
        "the proxy handles Content-Length bodies only: {recorded:?}"
    );
    requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(recorded.clone());
    let remaining = length.saturating_sub(rest.len());
    match answer {
        Answer::DenyAll { message } => {
            drain(&mut client, remaining);
            deny(&mut client, message);
        }
        Answer::DenyKeys {
            containing,
            upstream,
        } => {
            if recorded.key().contains(containing.as_str()) {
                drain(&mut client, remaining);
                deny(&mut client, "Access Denied");
                return;
            }
            forward(client, *upstream, &head, &rest, remaining);
        }
        Answer::Forward {
            upstream,
            bucket_owner,
        } => {
            let expected = recorded.header("x-amz-expected-bucket-owner");
            if let (Some(owner), Some(expected)) = (bucket_owner, expected)
                && owner != expected
            {
                drain(&mut client, remaining);
                deny(&mut client, "Access Denied");
                return;
            }
            forward(client, *upstream, &head, &rest, remaining);
        }
    }
}

/// Passes one request to `upstream` and its answer back.
fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    head: &[u8],
    rest: &[u8],
    remaining: usize,
) {
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    server.write_all(&with_connection_close(head)).unwrap();
    server.write_all(rest).unwrap();
    let mut body = (&mut client).take(remaining as u64);
    std::io::copy(&mut body, &mut server).unwrap();
    let mut response = Vec::new();
    let _ = server.read_to_end(&mut response);
    let _ = client.write_all(&with_connection_close(final_response(&response)));
    let _ = client.shutdown(Shutdown::Both);
}

/// Reads up to the end of the head; returns the head and what followed it.
pub(crate) fn read_head(stream: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Some((buffer, rest));
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

pub(crate) fn parse_head(head: &[u8]) -> Recorded {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Recorded {
        method,
        target,
        headers,
    }
}

/// A head (request or response) with any `Connection` header replaced by
/// `Connection: close`; the body after it unchanged.
pub(crate) fn with_connection_close(message: &[u8]) -> Vec<u8> {
    let end = find(message, b"\r\n\r\n").map_or(message.len(), |e| e + 2);
    let head = String::from_utf8_lossy(&message[..end]);
    let mut out = String::new();
    for line in head.split_inclusive("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
        }
    }
    out.push_str("Connection: close\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&message[end..]);
    bytes
}

/// The answer without interim `100 Continue` heads.
pub(crate) fn final_response(mut response: &[u8]) -> &[u8] {
    while response.starts_with(b"HTTP/1.1 100") {
        match find(response, b"\r\n\r\n") {
            Some(end) => response = &response[end + 4..],
            None => break,
        }
    }
    response
}

fn drain(stream: &mut TcpStream, bytes: usize) {
    let _ = std::io::copy(&mut stream.take(bytes as u64), &mut std::io::sink());
}

fn deny(stream: &mut TcpStream, message: &str) {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>{message}</Message><RequestId>S3TDTESTPROXY</RequestId></Error>"
    );
    let _ = write!(
        stream,
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.shutdown(Shutdown::Both);
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
