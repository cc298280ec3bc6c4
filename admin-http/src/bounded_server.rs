//! An HTTP/1 server whose memory and connections are bounded whatever its
//! clients do, for the admin port (which, with `hostNetwork`, anything that
//! reaches the node can connect to).
//!
//! - At most [`Limits::connections`] connections are open. When a new one
//!   arrives with every slot taken, the oldest connection still waiting for
//!   its request head is closed to make room (counted in `evicted`): a
//!   crowd of clients that connect and never finish a request cannot lock
//!   out the kubelet's probe, whose request arrives with its connection.
//! - A request head must arrive within [`Limits::header_read_timeout`] and
//!   fit in [`Limits::max_head_bytes`] with at most [`Limits::max_headers`]
//!   headers (hyper answers 431 otherwise).
//! - One request per connection (no keep-alive), and no connection lives
//!   longer than [`Limits::connection_lifetime`].
//!
//! So memory is at most `connections × max_head_bytes` of buffers plus the
//! answers. Both the launcher's metrics port and the uploader's admin port
//! are served by it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tower_service::Service as _;

/// The bounds of one server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections: usize,
    pub header_read_timeout: Duration,
    /// At least 8,192 (hyper's smallest read buffer).
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub connection_lifetime: Duration,
}

impl Limits {
    /// For an admin port asked by a kubelet and a Prometheus: a few
    /// connections at a time, small requests, answered at once.
    pub const ADMIN: Limits = Limits {
        connections: 64,
        header_read_timeout: Duration::from_secs(5),
        max_head_bytes: 8 * 1024,
        max_headers: 32,
        connection_lifetime: Duration::from_secs(30),
    };
}

/// Connections waiting for their request head, oldest first, each with
/// the means to close it.
type Waiting = Arc<Mutex<BTreeMap<u64, oneshot::Sender<()>>>>;

/// Serves `app` on `listener` within `limits` until the future is dropped.
/// Connections closed to make room are counted in `evicted`.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, evicted: Counter) {
    let slots = Arc::new(Semaphore::new(limits.connections));
    let waiting: Waiting = Arc::default();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes)
        .max_headers(limits.max_headers)
        .keep_alive(false);
    let mut next_id: u64 = 0;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, mostly: wait rather than spin.
                tracing::warn!(error = %e, "admin port cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let oldest = lock(&waiting).pop_first();
                if let Some((_, close)) = oldest {
                    let _ = close.send(());
                    evicted.inc();
                }
                // The closed connection's task gives its slot back at once;
                // with none to close, every slot is answering a request.
                match tokio::time::timeout(Duration::from_secs(1), slots.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(permit)) => permit,
                    _ => continue,
                }
            }
        };
        let id = next_id;
        next_id += 1;
        let (close, closed) = oneshot::channel();
        lock(&waiting).insert(id, close);
        let service = {
            let (app, waiting) = (app.clone(), waiting.clone());
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                // The head arrived: this connection is answered, not closed.
                lock(&waiting).remove(&id);
                let mut app = app.clone();
                async move { app.call(request).await }
            })
        };
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let (waiting, lifetime) = (waiting.clone(), limits.connection_lifetime);
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::timeout(lifetime, connection) => {}
                Ok(()) = closed => {}
            }
            lock(&waiting).remove(&id);
            drop(permit);
        });
    }
}

fn lock(waiting: &Waiting) -> std::sync::MutexGuard<'_, BTreeMap<u64, oneshot::Sender<()>>> {
    waiting.lock().unwrap_or_else(PoisonError::into_inner)
}
