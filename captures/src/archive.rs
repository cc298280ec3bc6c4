//! The bucket side of `captures`: which captures a window holds (`list`),
//! which flows the index names (`find`), and verified downloads (`fetch`).
//!
//! Keys come from the shared contracts: capture keys from
//! [`spool::keys::KeyTemplate`] with the default layout under `--prefix`,
//! index keys from [`flows::schema`], metadata names from
//! [`spool::object_metadata`]. Only the hour folders the window can touch are
//! listed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::BehaviorVersion;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, TimeDelta, Utc};
use flows::schema::{INDEX_DIR, INDEX_SUFFIX, index_hour_prefix};
use flows::{FlowRecord, IndexReader, PartialMerger, ReadLimits, Symptom};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use spool::CaptureName;
use spool::keys::{KeyContext, KeyTemplate};
use spool::object_metadata as meta;

use crate::window::Window;

/// Downloads in flight at once.
const PARALLEL_DOWNLOADS: usize = 4;
/// Metadata requests in flight at once.
const PARALLEL_HEADS: usize = 16;
/// Open partial records held per index object while merging a flow's
/// segments ([`flows::merge`]): objects are read [`PARALLEL_HEADS`] at a
/// time, so this bounds that memory to some 30 MiB. Past it a flow's
/// segments are listed unmerged (still found).
const MAX_OPEN_PARTIALS_PER_INDEX: usize = 4_096;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0}")]
    Config(String),
    #[error(
        "no AWS region: set AWS_REGION (or a region in the AWS profile) to the bucket's region"
    )]
    NoRegion,
    #[error("bucket {bucket} does not exist (check --bucket / S3_BUCKET and the region)")]
    NoSuchBucket { bucket: String },
    #[error(
        "no permission to {action} in s3://{bucket}: the credentials need s3:ListBucket and s3:GetObject on the bucket ({detail})"
    )]
    AccessDenied {
        bucket: String,
        action: String,
        detail: String,
    },
    #[error("cannot {action} in s3://{bucket}: {detail}")]
    S3 {
        bucket: String,
        action: String,
        detail: String,
    },
    #[error(
        "no captures between {from} and {to} under s3://{bucket}/{prefix}{nodes}: widen the window, or check --prefix and --node"
    )]
    EmptyWindow {
        bucket: String,
        prefix: String,
        from: String,
        to: String,
        nodes: String,
    },
    #[error(
        "no node has a flow index under s3://{bucket}/{index}, so the nodes cannot be discovered: name them with --node (or check --prefix)"
    )]
    NoNodes { bucket: String, index: String },
    #[error("invalid key layout for --prefix {prefix:?}: {detail}")]
    Layout { prefix: String, detail: String },
    #[error("node name {0:?} cannot be a folder name; pass real node names with --node")]
    BadNode(String),
    #[error("index object {key} is unreadable: {detail}")]
    Index { key: String, detail: String },
    #[error(
        "{key} has no {name} metadata, so its download cannot be verified; was it uploaded by s3-tcpdump?"
    )]
    NoChecksum { key: String, name: &'static str },
    #[error(
        "{key} is damaged: its SHA-256 is {actual}, but its metadata says {expected}; the download was not kept (nor used)"
    )]
    ChecksumMismatch {
        key: String,
        expected: String,
        actual: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How to reach the bucket: region and credentials come from the AWS
/// environment (AWS_REGION, AWS_PROFILE, …); a local store is reached with an
/// endpoint and path-style addressing.
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    pub url: Option<String>,
    pub force_path_style: bool,
}

/// Builds the S3 client over the workspace's one HTTP stack (the uploader's
/// client: rustls with the system roots; the SDK has no client of its own).
pub async fn client(endpoint: &Endpoint) -> Result<Client, ArchiveError> {
    let http =
        uploader::connect::marked_http_client().map_err(|e| ArchiveError::Config(e.to_string()))?;
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await;
    if shared.region().is_none() {
        return Err(ArchiveError::NoRegion);
    }
    let mut builder =
        aws_sdk_s3::config::Builder::from(&shared).force_path_style(endpoint.force_path_style);
    if let Some(url) = &endpoint.url {
        builder = builder.endpoint_url(url);
    }
    Ok(Client::from_conf(builder.build()))
}

/// Where to look: the bucket, the prefix of the default key layout, the
/// nodes (all that have an index when empty) and the window.
#[derive(Debug, Clone)]
pub struct Selection {
    pub bucket: String,
    pub prefix: String,
    pub nodes: Vec<String>,
    pub window: Window,
    /// The launcher's rotation: how long before the window a capture that
    /// covers its start can have started, and a capture's end when its
    /// metadata has no last packet.
    pub rotation: TimeDelta,
}

/// One capture in the bucket.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Capture {
    pub key: String,
    pub node: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub packets: Option<u64>,
    pub size: u64,
    /// `ok`, or what is damaged (the `pcap` metadata).
    pub pcap: Option<String>,
    #[serde(skip)]
    pub sha256: Option<String>,
}

/// A stretch of the window no capture of a node covers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Gap {
    pub node: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub captures: Vec<Capture>,
    pub gaps: Vec<Gap>,
}

/// A flow the index names, with the capture that holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub flows: Vec<FlowRecord>,
    /// The captures holding those flows, in key order.
    pub captures: Vec<String>,
    /// Index objects that were not read (too large, not an index): their
    /// captures' flows are missing from `flows`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedIndex>,
}

/// An index object `find` did not read, and why.
#[derive(Debug, Clone, Serialize)]
pub struct RefusedIndex {
    pub key: String,
    pub reason: String,
}

/// What `find` and `fetch --host` filter on.
#[derive(Debug, Clone, Default)]
pub struct FlowFilter {
    pub host: Option<IpAddr>,
    pub port: Option<u16>,
    pub symptom: Option<Symptom>,
}

impl FlowFilter {
    pub fn is_empty(&self) -> bool {
        self.host.is_none() && self.port.is_none() && self.symptom.is_none()
    }

    /// Whether `flow` is one the filter asks for.
    pub fn matches(&self, flow: &FlowRecord) -> bool {
        self.matches_ends(flow) && self.symptom.is_none_or(|s| flow.count(s) > 0)
    }

    /// Whether `flow`'s ends are those asked for: the same in every
    /// segment of a flow, so it can be asked before segments are merged.
    fn matches_ends(&self, flow: &FlowRecord) -> bool {
        self.host.is_none_or(|h| flow.involves(h)) && self.port.is_none_or(|p| flow.uses_port(p))
    }
}

/// The bucket, read through one client.
#[derive(Debug, Clone)]
pub struct Archive {
    client: Client,
    selection: Selection,
    template: KeyTemplate,
}

impl Archive {
    pub fn new(client: Client, selection: Selection) -> Result<Self, ArchiveError> {
        let layout = format!(
            "{}{{node}}/{{yyyy}}/{{mm}}/{{dd}}/{{hh}}/{{file}}",
            selection.prefix
        );
        let template = KeyTemplate::parse(&layout).map_err(|e| ArchiveError::Layout {
            prefix: selection.prefix.clone(),
            detail: e.to_string(),
        })?;
        for node in &selection.nodes {
            check_node(node)?;
        }
        Ok(Self {
            client,
            selection,
            template,
        })
    }

    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// The nodes asked for, or every node with an index partition.
    pub async fn nodes(&self) -> Result<Vec<String>, ArchiveError> {
        if !self.selection.nodes.is_empty() {
            return Ok(self.selection.nodes.clone());
        }
        let base = format!("{}{INDEX_DIR}node=", self.selection.prefix);
        let mut nodes = Vec::new();
        for folder in self.list(&base, true).await?.1 {
            if let Some(node) = folder
                .strip_prefix(&base)
                .and_then(|rest| rest.strip_suffix('/'))
            {
                check_node(node)?;
                nodes.push(node.to_owned());
            }
        }
        Ok(nodes)
    }

    /// [`Self::nodes`], refusing none at all: without a flow index
    /// (FLOW_INDEX=false) nodes cannot be discovered and must be named.
    async fn known_nodes(&self) -> Result<Vec<String>, ArchiveError> {
        let nodes = self.nodes().await?;
        if nodes.is_empty() {
            return Err(ArchiveError::NoNodes {
                bucket: self.selection.bucket.clone(),
                index: format!("{}{INDEX_DIR}", self.selection.prefix),
            });
        }
        Ok(nodes)
    }

    /// The captures overlapping the window, per node in time order, and the
    /// gaps in each node's coverage.
    pub async fn list_captures(&self) -> Result<Listing, ArchiveError> {
        let nodes = self.known_nodes().await?;
        let hours = self.selection.window.start_hours(self.selection.rotation);
        let mut keys = Vec::new();
        for node in &nodes {
            for hour in &hours {
                let prefix = self.hour_prefix(node, *hour);
                for key in self.list(&prefix, false).await?.0 {
                    if CaptureName::parse_ready(file_name(&key)).is_ok() {
                        keys.push((node.clone(), key));
                    }
                }
            }
        }
        let mut captures: Vec<Capture> = futures::stream::iter(keys)
            .map(|(node, key)| self.head(node, key))
            .buffered(PARALLEL_HEADS)
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .filter(|c| self.selection.window.overlaps(c.start, c.end))
            .collect();
        if captures.is_empty() {
            return Err(self.empty_window());
        }
        captures.sort_by(|a, b| (&a.node, a.start, &a.key).cmp(&(&b.node, b.start, &b.key)));
        let gaps = nodes
            .iter()
            .flat_map(|node| gaps(node, &captures, &self.selection.window))
            .collect();
        Ok(Listing { captures, gaps })
    }

    /// The flows in the window that match, from the index objects alone.
    pub async fn find_flows(&self, filter: &FlowFilter) -> Result<Found, ArchiveError> {
        let nodes = self.known_nodes().await?;
        let hours = self.selection.window.start_hours(self.selection.rotation);
        let mut index_keys = Vec::new();
        for node in &nodes {
            for hour in &hours {
                let prefix = index_hour_prefix(&self.selection.prefix, node, *hour);
                index_keys.extend(
                    self.list(&prefix, false)
                        .await?
                        .0
                        .into_iter()
                        .filter(|k| k.ends_with(INDEX_SUFFIX)),
                );
            }
        }
        if index_keys.is_empty() {
            return Err(self.empty_window());
        }
        // Each object is filtered as it streams in: only matching flows
        // are kept, whatever the objects hold.
        let mut flows = Vec::new();
        let mut refused = Vec::new();
        let mut per_object = futures::stream::iter(index_keys)
            .map(|key| self.read_index(key, filter))
            .buffered(PARALLEL_HEADS);
        while let Some(object) = per_object.try_next().await? {
            match object {
                Ok(matching) => flows.extend(matching),
                Err(refusal) => refused.push(refusal),
            }
        }
        flows.sort_by(|a, b| (a.first, &a.capture).cmp(&(b.first, &b.capture)));
        let captures: BTreeSet<String> = flows.iter().map(|f| f.capture.clone()).collect();
        Ok(Found {
            flows,
            captures: captures.into_iter().collect(),
            refused,
        })
    }

    /// Downloads `captures` into `dir/<node>/<file>`, in parallel, each
    /// checked against its metadata SHA-256 before it is kept. Returns the
    /// paths in the order of `captures`.
    pub async fn fetch(
        &self,
        captures: &[Capture],
        dir: &Path,
        progress: &indicatif::ProgressBar,
    ) -> Result<Vec<PathBuf>, ArchiveError> {
        futures::stream::iter(captures)
            .map(|c| self.download(c, dir, progress))
            .buffered(PARALLEL_DOWNLOADS)
            .try_collect()
            .await
    }

    async fn download(
        &self,
        capture: &Capture,
        dir: &Path,
        progress: &indicatif::ProgressBar,
    ) -> Result<PathBuf, ArchiveError> {
        let folder = dir.join(&capture.node);
        let path = folder.join(file_name(&capture.key));
        let write_error = |source| ArchiveError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&folder).map_err(write_error)?;
        let (expected, mut body) = self.open(capture).await?;
        // A temporary file beside the target: dropped (deleted) on any
        // error, renamed into place only once the checksum matched.
        let mut tmp = tempfile::NamedTempFile::new_in(&folder).map_err(write_error)?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = self.next_chunk(capture, &mut body).await? {
            hasher.update(&chunk);
            tmp.write_all(&chunk).map_err(write_error)?;
            progress.inc(chunk.len() as u64);
        }
        verify(capture, &expected, hasher)?;
        tmp.as_file().sync_all().map_err(write_error)?;
        tmp.persist(&path).map_err(|e| write_error(e.error))?;
        Ok(path)
    }

    /// Streams one capture's bytes to `consume` as they arrive, hashing
    /// them on the way; nothing is written to disk. `consume` returns false
    /// when it wants no more (the rest is still read and hashed). The
    /// capture's SHA-256 is checked at the end: a mismatch is an error
    /// naming the key, and whatever `consume` made of the bytes must be
    /// thrown away.
    pub async fn stream(
        &self,
        capture: &Capture,
        progress: &indicatif::ProgressBar,
        mut consume: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), ArchiveError> {
        let (expected, mut body) = self.open(capture).await?;
        let mut hasher = Sha256::new();
        let mut wanted = true;
        while let Some(chunk) = self.next_chunk(capture, &mut body).await? {
            hasher.update(&chunk);
            if wanted {
                wanted = consume(&chunk);
            }
            progress.inc(chunk.len() as u64);
        }
        verify(capture, &expected, hasher)
    }

    /// A capture's body and the SHA-256 its metadata promises.
    async fn open(&self, capture: &Capture) -> Result<(String, ByteStream), ArchiveError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.selection.bucket)
            .key(&capture.key)
            .send()
            .await
            .map_err(|e| self.s3_error(&e, &format!("read {}", capture.key)))?;
        let expected = out
            .metadata()
            .and_then(|m| m.get(meta::SHA256))
            .cloned()
            .ok_or_else(|| ArchiveError::NoChecksum {
                key: capture.key.clone(),
                name: meta::SHA256,
            })?;
        Ok((expected, out.body))
    }

    async fn next_chunk(
        &self,
        capture: &Capture,
        body: &mut ByteStream,
    ) -> Result<Option<bytes::Bytes>, ArchiveError> {
        body.try_next().await.map_err(|e| ArchiveError::S3 {
            bucket: self.selection.bucket.clone(),
            action: format!("read {}", capture.key),
            detail: e.to_string(),
        })
    }

    async fn head(&self, node: String, key: String) -> Result<Capture, ArchiveError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.selection.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.s3_error(&e, &format!("read the metadata of {key}")))?;
        let metadata = out.metadata().cloned().unwrap_or_default();
        let time = |name: &str| {
            metadata
                .get(name)
                .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let start = time(meta::CAPTURE_START)
            .or_else(|| {
                CaptureName::parse_ready(file_name(&key))
                    .ok()
                    .map(|n| n.start())
            })
            .unwrap_or_default();
        let end = time(meta::LAST_PACKET).unwrap_or(start + self.selection.rotation);
        Ok(Capture {
            packets: metadata.get(meta::PACKETS).and_then(|p| p.parse().ok()),
            size: out
                .content_length()
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(0),
            pcap: metadata.get(meta::PCAP).cloned(),
            sha256: metadata.get(meta::SHA256).cloned(),
            key,
            node,
            start,
            end: end.max(start),
        })
    }

    /// The flows of one index object that are in the window and match,
    /// read as the object streams in ([`IndexReader`]: bounded gzip window
    /// and line length, a cap on what it decompresses to) with a flow's
    /// partial records merged. An object that breaks a limit or is not an
    /// index is refused (the inner `Err`), not a reason to stop.
    async fn read_index(
        &self,
        key: String,
        filter: &FlowFilter,
    ) -> Result<Result<Vec<FlowRecord>, RefusedIndex>, ArchiveError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.selection.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.s3_error(&e, &format!("read {key}")))?;
        let window = self.selection.window;
        let mut body = out.body;
        let mut matching = Vec::new();
        let mut keep = |whole: FlowRecord| {
            if window.overlaps(whole.first, whole.last) && filter.matches(&whole) {
                matching.push(whole);
            }
        };
        let mut merger = PartialMerger::new(MAX_OPEN_PARTIALS_PER_INDEX);
        let mut reader = IndexReader::new(ReadLimits::default(), |record: FlowRecord| {
            if filter.matches_ends(&record) {
                merger.push(record, &mut keep);
            }
        });
        let refuse = |why: flows::ReadError| {
            let hint = match why {
                flows::ReadError::TooLarge { .. } | flows::ReadError::LineTooLong { .. } => {
                    "no flag raises this limit: the uploader's index objects stay far below it, so check who wrote this one"
                }
                _ => "check who wrote this object",
            };
            RefusedIndex {
                key: key.clone(),
                reason: format!("{why}; {hint}"),
            }
        };
        loop {
            let chunk = body.try_next().await.map_err(|e| ArchiveError::Index {
                key: key.clone(),
                detail: e.to_string(),
            })?;
            let Some(chunk) = chunk else { break };
            if let Err(why) = reader.feed(&chunk) {
                return Ok(Err(refuse(why)));
            }
        }
        if let Err(why) = reader.finish() {
            return Ok(Err(refuse(why)));
        }
        merger.finish(&mut keep);
        Ok(Ok(matching))
    }

    /// Keys (and, with `folders`, the common prefixes at `/`) under `prefix`.
    async fn list(
        &self,
        prefix: &str,
        folders: bool,
    ) -> Result<(Vec<String>, Vec<String>), ArchiveError> {
        let mut request = self
            .client
            .list_objects_v2()
            .bucket(&self.selection.bucket)
            .prefix(prefix);
        if folders {
            request = request.delimiter("/");
        }
        let mut pages = request.into_paginator().send();
        let (mut keys, mut prefixes) = (Vec::new(), Vec::new());
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.s3_error(&e, &format!("list {prefix}")))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            prefixes.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_owned)),
            );
        }
        Ok((keys, prefixes))
    }

    fn hour_prefix(&self, node: &str, hour: DateTime<Utc>) -> String {
        let ctx = KeyContext {
            node: node.to_owned(),
            ..KeyContext::default()
        };
        let key = self.template.render(&ctx, &CaptureName::new(hour, 0));
        match key.rfind('/') {
            Some(slash) => key[..=slash].to_owned(),
            None => String::new(),
        }
    }

    fn empty_window(&self) -> ArchiveError {
        let s = &self.selection;
        ArchiveError::EmptyWindow {
            bucket: s.bucket.clone(),
            prefix: s.prefix.clone(),
            from: crate::window::rfc3339(s.window.from),
            to: crate::window::rfc3339(s.window.to),
            nodes: if s.nodes.is_empty() {
                String::new()
            } else {
                format!(" for node {}", s.nodes.join(", "))
            },
        }
    }

    fn s3_error<E, R>(&self, err: &SdkError<E, R>, action: &str) -> ArchiveError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let bucket = self.selection.bucket.clone();
        // The store's code and message say what is wrong; the SDK's full
        // context (raw response and all) only when there is none.
        let detail = match (err.code(), err.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => DisplayErrorContext(err).to_string(),
        };
        match err.code() {
            Some("NoSuchBucket") => ArchiveError::NoSuchBucket { bucket },
            Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "Forbidden") => {
                ArchiveError::AccessDenied {
                    bucket,
                    action: action.to_owned(),
                    detail,
                }
            }
            _ => ArchiveError::S3 {
                bucket,
                action: action.to_owned(),
                detail,
            },
        }
    }
}

/// The stretches of the window that none of `node`'s captures cover.
pub fn gaps(node: &str, captures: &[Capture], window: &Window) -> Vec<Gap> {
    let mut gaps = Vec::new();
    let mut covered_to = window.from;
    let mut mine: Vec<&Capture> = captures.iter().filter(|c| c.node == node).collect();
    mine.sort_by_key(|c| c.start);
    for c in mine {
        if c.start > covered_to {
            gaps.push(Gap {
                node: node.to_owned(),
                from: covered_to,
                to: c.start.min(window.to),
            });
        }
        covered_to = covered_to.max(c.end);
        if covered_to >= window.to {
            return gaps;
        }
    }
    if covered_to < window.to {
        gaps.push(Gap {
            node: node.to_owned(),
            from: covered_to,
            to: window.to,
        });
    }
    gaps
}

/// Captures grouped by node, for callers that print per node.
pub fn by_node(captures: &[Capture]) -> BTreeMap<&str, Vec<&Capture>> {
    let mut map: BTreeMap<&str, Vec<&Capture>> = BTreeMap::new();
    for c in captures {
        map.entry(c.node.as_str()).or_default().push(c);
    }
    map
}

fn check_node(node: &str) -> Result<(), ArchiveError> {
    if node.is_empty() || node == "." || node == ".." || node.contains(['/', '\\']) {
        return Err(ArchiveError::BadNode(node.to_owned()));
    }
    Ok(())
}

fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The bytes hashed are those the metadata promised, or the capture is
/// damaged.
fn verify(capture: &Capture, expected: &str, hasher: Sha256) -> Result<(), ArchiveError> {
    let actual = hex(&hasher.finalize());
    if actual.eq_ignore_ascii_case(expected) {
        return Ok(());
    }
    Err(ArchiveError::ChecksumMismatch {
        key: capture.key.clone(),
        expected: expected.to_owned(),
        actual,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn capture(node: &str, start: &str, end: &str) -> Capture {
        Capture {
            key: format!("{node}/{start}"),
            node: node.to_owned(),
            start: at(start),
            end: at(end),
            packets: None,
            size: 0,
            pcap: None,
            sha256: None,
        }
    }

    #[test]
    fn gaps_are_the_stretches_of_the_window_no_capture_covers() {
        let w = Window::new(at("2026-11-27T14:00:00Z"), at("2026-11-27T14:10:00Z")).unwrap();
        let caps = vec![
            capture("a", "2026-11-27T13:59:30Z", "2026-11-27T14:01:00Z"),
            capture("a", "2026-11-27T14:01:00Z", "2026-11-27T14:02:00Z"),
            capture("a", "2026-11-27T14:05:00Z", "2026-11-27T14:06:00Z"),
            capture("b", "2026-11-27T14:00:00Z", "2026-11-27T14:11:00Z"),
        ];
        assert_eq!(
            gaps("a", &caps, &w),
            vec![
                Gap {
                    node: "a".into(),
                    from: at("2026-11-27T14:02:00Z"),
                    to: at("2026-11-27T14:05:00Z")
                },
                Gap {
                    node: "a".into(),
                    from: at("2026-11-27T14:06:00Z"),
                    to: at("2026-11-27T14:10:00Z")
                },
            ]
        );
        assert!(gaps("b", &caps, &w).is_empty());
        assert_eq!(
            gaps("c", &caps, &w).len(),
            1,
            "a node with nothing is one gap"
        );
    }

    #[test]
    fn node_names_that_are_not_folder_names_are_refused() {
        for bad in ["", ".", "..", "a/b"] {
            assert!(check_node(bad).is_err(), "{bad:?}");
        }
        assert!(check_node("ip-10-0-1-7").is_ok());
    }
}
