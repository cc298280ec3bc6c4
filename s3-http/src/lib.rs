//! Connections to S3, marked so that the capture leaves them out.
//!
//! The uploader shares the node's network namespace with the capture: every
//! upload of capture N would be recorded, in full, in capture N+1, and
//! captures would grow without end. Every socket this module opens carries
//! [`spool::UPLOAD_TOS`] (IPv4 TOS or IPv6 traffic class), which the
//! launcher's default filter excludes.
//!
//! The AWS SDK's own HTTP client offers no hook on its sockets, so this is a
//! small client of the same parts: hyper-util's pooled client over
//! hyper-rustls (aws-lc-rs, the system's roots) over a TCP connector that
//! marks each socket once it is connected. Only the SYN and the last ACK of
//! the handshake go out unmarked. It is the workspace's only HTTP client
//! (the uploader, the `captures` CLI and the tests' S3 reader): the SDK is
//! built without its own, so S3, STS, Pod Identity and instance metadata all
//! go through here, over one TLS stack. A crate of its own so that readers
//! of the bucket need not build the uploader.
//!
//! Timeouts follow the SDK's settings, with one difference that matters on a
//! congested node: the connect timeout bounds the TCP connect, and the read
//! timeout bounds *silence*, not size. A request fails when no byte of its
//! body has been taken by the connection and no response has come for the
//! read timeout; a large body on a slow link that keeps moving is never cut
//! off. (Bounding the whole request instead meant that a 64 MiB part needed
//! more than 9 Mbit/s or was retried forever.) Two socket settings make
//! "moving" mean the wire and not a kernel buffer: `TCP_USER_TIMEOUT` (the
//! read timeout) fails a connection whose sent data stays unacknowledged
//! that long, and a send buffer of [`SEND_BUFFER`] keeps what is still
//! queued once the whole body has been taken small, so that the answer is
//! due within the read timeout of the body's end.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tower_service::Service;

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("TLS settings for S3 could not be built: {0}")]
    Tls(#[from] rustls::Error),
}

/// Send buffer of an upload socket: the kernel may hold this much (twice
/// it, as Linux counts) after the last body byte was taken. 512 KiB in
/// flight still fill 400 MB/s over 8 connections at a 10 ms round trip.
const SEND_BUFFER: usize = 256 * 1024;

/// How long an idle pooled connection is kept (the SDK's default).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

type MarkedClient = Client<HttpsConnector<MarkingConnector>, SdkBody>;
/// (connect timeout, read timeout)
type Timeouts = (Option<Duration>, Option<Duration>);

/// Builds the HTTP client: HTTPS (or plain HTTP for a local endpoint),
/// every connection marked.
pub fn marked_http_client() -> Result<SharedHttpClient, HttpClientError> {
    let roots = rustls_native_certs::load_native_certs();
    let mut store = rustls::RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(roots.certs);
    if added == 0 {
        tracing::warn!(errors = ?roots.errors, "no system root certificates: HTTPS endpoints will be refused");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(SharedHttpClient::new(MarkedHttpClient {
        tls,
        connectors: Mutex::new(HashMap::new()),
    }))
}

/// One pooled connector per timeout setting, as the SDK's client keeps.
#[derive(Debug)]
struct MarkedHttpClient {
    tls: rustls::ClientConfig,
    connectors: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
}

impl HttpClient for MarkedHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key: Timeouts = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self
            .connectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connectors
            .entry(key)
            .or_insert_with(|| SharedHttpConnector::new(self.connector(key.0, key.1)))
            .clone()
    }
}

impl MarkedHttpClient {
    fn connector(
        &self,
        connect_timeout: Option<Duration>,
        read_timeout: Option<Duration>,
    ) -> MarkedConnector {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(connect_timeout);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(MarkingConnector { tcp, read_timeout });
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(https);
        MarkedConnector {
            client,
            read_timeout,
        }
    }
}

/// Sends the SDK's requests over the marked, pooled client.
#[derive(Debug, Clone)]
struct MarkedConnector {
    client: MarkedClient,
    read_timeout: Option<Duration>,
}

impl HttpConnector for MarkedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let progress = Arc::new(Progress::new());
        let request = request.map(|body| {
            SdkBody::from_body_1_x(Watched {
                inner: body,
                progress: progress.clone(),
            })
        });
        let sending = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(limit) => tokio::select! {
                    response = sending => response,
                    () = progress.silent_for(limit) => {
                        return Err(ConnectorError::timeout(
                            format!("nothing sent or received for {limit:?}").into(),
                        ));
                    }
                },
                None => sending.await,
            }
            .map_err(connector_error)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// When a request last moved: a body chunk taken by the connection.
#[derive(Debug)]
struct Progress {
    start: tokio::time::Instant,
    /// Milliseconds after `start` of the last movement.
    last_ms: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `limit`.
    async fn silent_for(&self, limit: Duration) {
        loop {
            let last = self.start
                + Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
            let deadline = last + limit;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A request body that records every chunk the connection takes from it.
struct Watched {
    inner: SdkBody,
    progress: Arc<Progress>,
}

impl http_body::Body for Watched {
    type Data = bytes::Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            self.progress.touch();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

/// Sorts hyper's failures the way the SDK's own client does, so that
/// the uploader's failure classification sees the same kinds.
fn connector_error(error: hyper_util::client::legacy::Error) -> ConnectorError {
    if error.is_connect() {
        return ConnectorError::io(error.into());
    }
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        if let Some(hyper_error) = cause.downcast_ref::<hyper::Error>() {
            if hyper_error.is_timeout() {
                return ConnectorError::timeout(error.into());
            }
            if hyper_error.is_user() {
                return ConnectorError::user(error.into());
            }
            if hyper_error.is_incomplete_message() {
                return ConnectorError::other(error.into(), Some(ErrorKind::TransientError));
            }
            break;
        }
        source = cause.source();
    }
    ConnectorError::io(error.into())
}

/// hyper-util's TCP connector, with the upload mark set on each socket once
/// it is connected (before TLS starts).
#[derive(Debug, Clone)]
struct MarkingConnector {
    tcp: TcpConnector,
    read_timeout: Option<Duration>,
}

impl Service<http::Uri> for MarkingConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.tcp.call(uri);
        let read_timeout = self.read_timeout;
        Box::pin(async move {
            let stream = connecting.await?;
            mark(stream.inner())?;
            let socket = socket2::SockRef::from(stream.inner());
            socket.set_send_buffer_size(SEND_BUFFER)?;
            socket.set_tcp_user_timeout(read_timeout)?;
            Ok(stream)
        })
    }
}

/// Sets the upload mark on a connected socket. A socket that cannot be
/// marked is an error: unmarked, the upload would land in the next capture.
pub fn mark(stream: &TcpStream) -> io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    let tos = u32::from(spool::UPLOAD_TOS);
    match stream.peer_addr()? {
        SocketAddr::V4(_) => socket.set_tos_v4(tos),
        SocketAddr::V6(peer) => {
            socket.set_tclass_v6(tos)?;
            // An IPv4 peer reached through a dual-stack socket sends IPv4
            // packets, which take their TOS from IP_TOS.
            if peer.ip().to_ipv4_mapped().is_some() {
                socket.set_tos_v4(tos)?;
            }
            Ok(())
        }
    }
}
