//! A fake Kubernetes API server for the journal's tests (there is no API
//! server on these machines). It speaks the real wire format for the two
//! resources the journal reads, pods and services, at `/api/v1/...`:
//!
//! - a list (`GET /api/v1/pods?fieldSelector=spec.nodeName=n1`) answers a
//!   `PodList` with `metadata.resourceVersion` and every matching item in
//!   one page (no `continue`);
//! - a watch (`?watch=true&resourceVersion=N`) answers `200` with chunked
//!   JSON lines, `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":…}`:
//!   first every change after `N`, then changes as they happen;
//! - a watch from a version older than the last [`FakeApiServer::expire`]
//!   gets what a real server sends: an `ERROR` event whose object is a
//!   `Status` with `code: 410` (reason `Expired`), and the stream ends;
//! - [`FakeApiServer::drop_watches`] cuts every open watch mid-stream;
//!   [`FakeApiServer::set_down`] closes every connection before answering,
//!   as an API server that went away.
//!
//! Objects are JSON shaped as `kubectl get -o json` prints them ([`pod`],
//! [`service`]). Each request and the bytes answered are counted, for the
//! benchmark of API load.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// The two resources served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Pod,
    Service,
}

impl Kind {
    fn list_kind(self) -> &'static str {
        match self {
            Self::Pod => "PodList",
            Self::Service => "ServiceList",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Self::Pod => "Pod",
            Self::Service => "Service",
        }
    }
}

/// One change in the server's history.
#[derive(Debug, Clone)]
struct Change {
    version: u64,
    kind: Kind,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    event: &'static str,
    object: Value,
}

/// What is broadcast to open watches.
#[derive(Debug, Clone)]
enum Notice {
    Change(Change),
    Bookmark,
    Expired,
    Drop,
}

#[derive(Debug, Default)]
struct State {
    version: u64,
    /// Live objects by kind and uid.
    objects: BTreeMap<(Kind, String), Value>,
    history: Vec<Change>,
    /// Watches from a version below this get `410 Gone`.
    expired_below: u64,
}

/// A running fake API server; stops when dropped (its task is aborted).
#[derive(Debug)]
pub struct FakeApiServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    notices: broadcast::Sender<Notice>,
    down: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    /// Starts on a free loopback port (inside a tokio runtime).
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            version: 1,
            ..State::default()
        }));
        let (notices, _) = broadcast::channel(65_536);
        let down = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let server = Server {
            state: state.clone(),
            notices: notices.clone(),
            down: down.clone(),
            requests: requests.clone(),
            bytes: bytes.clone(),
        };
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let server = server.clone();
                tokio::spawn(async move { server.serve(stream).await });
            }
        });
        Self {
            addr,
            state,
            notices,
            down,
            requests,
            bytes,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`, as `kubectl proxy` serves.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig naming this server with no credentials, as one for
    /// `kubectl proxy` would.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: nobody\nusers:\n- name: nobody\n  user: {{}}\ncurrent-context: fake\n",
            self.url()
        )
    }

    /// Creates or replaces an object (`ADDED` or `MODIFIED`).
    pub fn apply(&self, kind: Kind, mut object: Value) {
        let uid = object["metadata"]["uid"].as_str().unwrap().to_owned();
        let mut state = self.state.lock().unwrap();
        state.version += 1;
        let version = state.version;
        object["metadata"]["resourceVersion"] = version.to_string().into();
        let event = if state.objects.insert((kind, uid), object.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.record(&mut state, kind, event, object);
    }

    /// Deletes an object by uid (`DELETED`, carrying its last state).
    pub fn delete(&self, kind: Kind, uid: &str) {
        let mut state = self.state.lock().unwrap();
        let Some(mut object) = state.objects.remove(&(kind, uid.to_owned())) else {
            return;
        };
        state.version += 1;
        object["metadata"]["resourceVersion"] = state.version.to_string().into();
        self.record(&mut state, kind, "DELETED", object);
    }

    /// Sends a `BOOKMARK` to every open watch.
    pub fn bookmark(&self) {
        let _ = self.notices.send(Notice::Bookmark);
    }

    /// Compacts the history: every open watch gets an `ERROR` event with a
    /// `410` Status and ends; a watch from any version seen so far gets the
    /// same. Only a new list goes on.
    pub fn expire(&self) {
        let mut state = self.state.lock().unwrap();
        state.expired_below = state.version + 1;
        state.history.clear();
        let _ = self.notices.send(Notice::Expired);
    }

    /// Cuts every open watch without a word (a connection lost).
    pub fn drop_watches(&self) {
        let _ = self.notices.send(Notice::Drop);
    }

    /// While down, every connection is closed before it is answered, and
    /// open watches are cut.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.drop_watches();
        }
    }

    /// Requests answered or refused so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Bytes of responses sent so far (headers and bodies).
    pub fn bytes_sent(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn record(&self, state: &mut State, kind: Kind, event: &'static str, object: Value) {
        let change = Change {
            version: state.version,
            kind,
            event,
            object,
        };
        state.history.push(change.clone());
        let _ = self.notices.send(Notice::Change(change));
    }
}

#[derive(Debug, Clone)]
struct Server {
    state: Arc<Mutex<State>>,
    notices: broadcast::Sender<Notice>,
    down: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

/// What a request asks for.
#[derive(Debug)]
struct Request {
    kind: Kind,
    watch: bool,
    version: u64,
    node: Option<String>,
}

impl Server {
    async fn serve(&self, stream: TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        loop {
            let mut request_line = String::new();
            if read.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                return;
            }
            // Headers up to the blank line; GETs have no body.
            loop {
                let mut line = String::new();
                if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" || line == "\n" {
                    break;
                }
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            if self.down.load(Ordering::SeqCst) {
                return;
            }
            let target = request_line.split_whitespace().nth(1).unwrap_or("/");
            let Some(request) = parse(target) else {
                let body = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":format!("the fake API server does not serve {target}"),"reason":"NotFound","code":404});
                self.respond(&mut write, "404 Not Found", &body).await;
                continue;
            };
            if request.watch {
                self.watch(&mut write, &request).await;
                return;
            }
            let body = self.list(&request);
            if !self.respond(&mut write, "200 OK", &body).await {
                return;
            }
        }
    }

    fn list(&self, request: &Request) -> Value {
        let state = self.state.lock().unwrap();
        let items: Vec<Value> = state
            .objects
            .iter()
            .filter(|((kind, _), object)| *kind == request.kind && matches(request, object))
            .map(|(_, object)| object.clone())
            .collect();
        json!({
            "kind": request.kind.list_kind(),
            "apiVersion": "v1",
            "metadata": {"resourceVersion": state.version.to_string()},
            "items": items,
        })
    }

    async fn respond(
        &self,
        write: &mut (impl AsyncWriteExtUnpin + ?Sized),
        status: &str,
        body: &Value,
    ) -> bool {
        let body = serde_json::to_vec(body).unwrap();
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.bytes
            .fetch_add((head.len() + body.len()) as u64, Ordering::Relaxed);
        write.write_all(head.as_bytes()).await.is_ok() && write.write_all(&body).await.is_ok()
    }

    async fn watch(&self, write: &mut (impl AsyncWriteExtUnpin + ?Sized), request: &Request) {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        if write.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        self.bytes.fetch_add(head.len() as u64, Ordering::Relaxed);
        // Subscribe before reading the history, so nothing falls between.
        let mut notices = self.notices.subscribe();
        let (backlog, expired, mut version) = {
            let state = self.state.lock().unwrap();
            let expired = request.version < state.expired_below;
            let backlog: Vec<Change> = state
                .history
                .iter()
                .filter(|c| c.version > request.version && c.kind == request.kind)
                .cloned()
                .collect();
            (backlog, expired, state.version)
        };
        if expired {
            let _ = self.send(write, &gone(request.version)).await;
            let _ = write.write_all(b"0\r\n\r\n").await;
            return;
        }
        let mut last_sent = request.version;
        for change in backlog {
            last_sent = change.version;
            if !self.send_change(write, request, &change).await {
                return;
            }
        }
        loop {
            match notices.recv().await {
                Ok(Notice::Change(change)) => {
                    version = version.max(change.version);
                    if change.kind != request.kind || change.version <= last_sent {
                        continue;
                    }
                    last_sent = change.version;
                    if !self.send_change(write, request, &change).await {
                        return;
                    }
                }
                Ok(Notice::Bookmark) => {
                    let bookmark = json!({"type":"BOOKMARK","object":{"kind":request.kind.kind(),"apiVersion":"v1","metadata":{"resourceVersion":version.to_string()}}});
                    if !self.send(write, &bookmark).await {
                        return;
                    }
                }
                Ok(Notice::Expired) => {
                    let _ = self.send(write, &gone(last_sent)).await;
                    let _ = write.write_all(b"0\r\n\r\n").await;
                    return;
                }
                // Cut: no closing chunk, the client sees the stream break.
                Ok(Notice::Drop) | Err(_) => return,
            }
        }
    }

    async fn send_change(
        &self,
        write: &mut (impl AsyncWriteExtUnpin + ?Sized),
        request: &Request,
        change: &Change,
    ) -> bool {
        // A pod moved off the node leaves the watch as a deletion would;
        // here objects never move, so a filter miss is simply skipped.
        if !matches(request, &change.object) {
            return true;
        }
        let event = json!({"type": change.event, "object": change.object});
        self.send(write, &event).await
    }

    /// One event as one chunk, one JSON line.
    async fn send(&self, write: &mut (impl AsyncWriteExtUnpin + ?Sized), event: &Value) -> bool {
        let mut line = serde_json::to_vec(event).unwrap();
        line.push(b'\n');
        let chunk_head = format!("{:x}\r\n", line.len());
        self.bytes.fetch_add(
            (chunk_head.len() + line.len() + 2) as u64,
            Ordering::Relaxed,
        );
        write.write_all(chunk_head.as_bytes()).await.is_ok()
            && write.write_all(&line).await.is_ok()
            && write.write_all(b"\r\n").await.is_ok()
            && write.flush().await.is_ok()
    }
}

/// Writable halves of a connection, in tests.
pub trait AsyncWriteExtUnpin: tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncWrite + Unpin + Send> AsyncWriteExtUnpin for T {}

/// The event a real API server sends for a watch from a compacted version.
fn gone(version: u64) -> Value {
    json!({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":format!("too old resource version: {version}"),"reason":"Expired","code":410}})
}

fn matches(request: &Request, object: &Value) -> bool {
    request
        .node
        .as_deref()
        .is_none_or(|node| object["spec"]["nodeName"].as_str() == Some(node))
}

/// `/api/v1/pods?watch=true&resourceVersion=5&fieldSelector=spec.nodeName%3Dn1`
fn parse(target: &str) -> Option<Request> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let kind = match path {
        "/api/v1/pods" => Kind::Pod,
        "/api/v1/services" => Kind::Service,
        _ => return None,
    };
    let mut request = Request {
        kind,
        watch: false,
        version: 0,
        node: None,
    };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = value
            .replace("%3D", "=")
            .replace("%3d", "=")
            .replace("%2F", "/");
        match key {
            "watch" => request.watch = value == "true" || value == "1",
            "resourceVersion" => request.version = value.parse().unwrap_or(0),
            "fieldSelector" => {
                request.node = value.strip_prefix("spec.nodeName=").map(str::to_owned);
            }
            _ => {}
        }
    }
    Some(request)
}

/// A running pod as `kubectl get pod -o json` shows it, owned by a
/// Deployment's ReplicaSet (`<deployment>-7d4b9c`), with an environment
/// variable holding a secret that must never reach the journal.
pub fn pod(
    namespace: &str,
    name: &str,
    uid: &str,
    node: &str,
    ips: &[&str],
    deployment: &str,
) -> Value {
    let hash = "7d4b9c";
    let pod_ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "generateName": format!("{deployment}-{hash}-"),
            "namespace": namespace,
            "uid": uid,
            "creationTimestamp": "2026-11-27T14:00:00Z",
            "labels": {"app": deployment, "pod-template-hash": hash, "secret-label": "do-not-keep"},
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": format!("{deployment}-{hash}"),
                "uid": format!("rs-{uid}"),
                "controller": true,
                "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "nodeName": node,
            "containers": [{
                "name": "app",
                "image": "registry.example/app:1",
                "env": [{"name": "DB_PASSWORD", "value": "hunter2-must-not-leak"}],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "schedulerName": "default-scheduler",
            "enableServiceLinks": true
        },
        "status": {
            "phase": if ips.is_empty() { "Pending" } else { "Running" },
            "hostIP": "10.0.1.7",
            "hostIPs": [{"ip": "10.0.1.7"}],
            "podIP": ips.first().copied().unwrap_or(""),
            "podIPs": pod_ips,
            "startTime": "2026-11-27T14:00:01Z",
            "qosClass": "BestEffort"
        }
    })
}

/// A ClusterIP Service as `kubectl get service -o json` shows it.
pub fn service(namespace: &str, name: &str, uid: &str, cluster_ips: &[&str]) -> Value {
    json!({
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "creationTimestamp": "2026-11-27T14:00:00Z"
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ips.first().copied().unwrap_or("None"),
            "clusterIPs": cluster_ips,
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": name},
            "sessionAffinity": "None",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster"
        },
        "status": {"loadBalancer": {}}
    })
}
