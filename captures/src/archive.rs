//! The bucket side of `captures`: which captures a window holds (`list`),
//! which flows the index names (`find`), and verified downloads (`fetch`).
//!
//! Keys and metadata come from the bucket contract (the `bucket` crate).
//! The key template is the one the uploader recorded in the bucket (its
//! layout record under `--prefix`); without a record, `--key-template`, and
//! without that the default layout under `--prefix`.
//!
//! Only the prefixes the window can touch are listed: per node and hour,
//! the template rendered up to the first value an hour and a node do not
//! fix ([`KeyTemplate::hour_prefix`]). For the default layout that is one
//! hour folder; for a template that puts an unknown value first
//! (`traces/{cluster}/{node}/…`) it is the static prefix, listed once, and
//! every key found is read back through the template
//! ([`KeyTemplate::capture_of_node`]) to keep the nodes' captures of the hours
//! asked for.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bucket::capture_keys::{DEFAULT_LAYOUT, KeyTemplate};
use bucket::failure::{FailureKind, classify_code};
use bucket::index_keys::{INDEX_DIR, INDEX_SUFFIX, index_hour_prefix, index_node_prefix};
use bucket::journal_keys::{JOURNAL_DIR, JOURNAL_SUFFIX, journal_hour_prefix, journal_node_prefix};
use bucket::layout_record::{LAYOUT_OBJECT, LayoutRecord, LayoutRecordError};
use bucket::object_metadata::{MetadataError, ObjectMetadata};
use chrono::{DateTime, TimeDelta, Utc};
use flows::{FlowRecord, IndexReader, PartialMerger, ReadLimits, Symptom};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use spool::CaptureName;

use crate::identity::{Identities, IpSelection, ReadSegment, RefusedJournal, SegmentReader};
use crate::window::Window;

/// The prefix of the default layout, when `--prefix` is not given.
const DEFAULT_PREFIX: &str = "tcp-dumps/";

/// Top-level folders searched for a layout record when neither `--prefix`
/// nor `--key-template` is given.
pub const MAX_FOLDERS_SEARCHED: usize = 20;

/// How far before the window journal segments are read: one journal
/// period (the rotation, counted separately) and some slack for a clock
/// that lags.
pub const JOURNAL_LOOKBACK: TimeDelta = TimeDelta::minutes(5);

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
    #[error(transparent)]
    HttpClient(#[from] s3_http::HttpClientError),
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
    #[error("s3://{bucket} holds layout records under {prefixes}: choose one with --prefix")]
    SeveralLayouts { bucket: String, prefixes: String },
    #[error("invalid key layout for --prefix {prefix:?}: {detail}")]
    Layout { prefix: String, detail: String },
    #[error("--key-template {template:?} is invalid: {source}")]
    KeyTemplate {
        template: String,
        source: bucket::capture_keys::KeyError,
    },
    #[error("the layout record s3://{bucket}/{key} cannot be used: {source}")]
    LayoutRecord {
        bucket: String,
        key: String,
        source: LayoutRecordError,
    },
    #[error("node name {0:?} cannot be a folder name; pass real node names with --node")]
    BadNode(String),
    #[error("journal object {key} cannot be read: {detail}")]
    Journal { key: String, detail: String },
    #[error("index object {key} is unreadable: {detail}")]
    Index { key: String, detail: String },
    #[error(
        "{key} has no readable s3-tcpdump metadata ({source}), so its download cannot be verified; was it uploaded by s3-tcpdump?"
    )]
    NoChecksum { key: String, source: MetadataError },
    #[error(
        "{key} is damaged: its SHA-256 is {actual}, but its metadata says {expected}; the download was not kept (nor used)"
    )]
    ChecksumMismatch {
        key: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{first} and {second} would both be downloaded to {path}; fetch them in separate windows or with --node"
    )]
    SameDestination {
        first: String,
        second: String,
        path: PathBuf,
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

/// Builds the S3 client over the workspace's one HTTP stack (`s3-http`:
/// rustls with the system roots; the SDK has no client of its own).
pub async fn client(endpoint: &Endpoint) -> Result<Client, ArchiveError> {
    let http = s3_http::marked_http_client()?;
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

/// Where to look: the bucket, the static prefix of the key layout (where
/// its layout record is), the nodes (all that have an index when empty) and
/// the window.
#[derive(Debug, Clone)]
pub struct Selection {
    pub bucket: String,
    /// `--prefix`; `None` to look for the layout record (see
    /// [`Archive::with_recorded_layout`]).
    pub prefix: Option<String>,
    /// The key template to read the bucket by when it holds no layout
    /// record (`--key-template`); the default layout under `prefix` when
    /// `None`.
    pub key_template: Option<String>,
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
    /// Packets the kernel dropped while it was written (the `kernel-drops`
    /// metadata), when the launcher counted them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_drops: Option<u64>,
    /// Packets the interface dropped (`interface-drops`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface_drops: Option<u64>,
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
    /// `--pod`, `--selector`, `--service` resolved through the identity
    /// journals: a flow matches when one end's address is a selected one
    /// and the flow's time overlaps that address's interval.
    pub identity: Option<Arc<IpSelection>>,
}

impl FlowFilter {
    pub fn is_empty(&self) -> bool {
        self.host.is_none()
            && self.port.is_none()
            && self.symptom.is_none()
            && self.identity.is_none()
    }

    /// Whether `ip`, seen at `at`, is one the filter's host and identity
    /// selection ask for (for what is not a flow: a DNS answer).
    pub fn matches_address(&self, ip: IpAddr, at: DateTime<Utc>) -> bool {
        self.host.is_none_or(|h| h == ip)
            && self.identity.as_ref().is_none_or(|s| s.matches(ip, at, at))
    }

    /// Whether `flow` is one the filter asks for.
    pub fn matches(&self, flow: &FlowRecord) -> bool {
        self.matches_ends(flow) && self.symptom.is_none_or(|s| flow.count(s) > 0)
    }

    /// Whether `flow`'s ends are those asked for: the same in every
    /// segment of a flow, so it can be asked before segments are merged.
    fn matches_ends(&self, flow: &FlowRecord) -> bool {
        self.host.is_none_or(|h| flow.involves(h))
            && self.port.is_none_or(|p| flow.uses_port(p))
            && self.identity.as_ref().is_none_or(|s| {
                s.matches(flow.src, flow.first, flow.last)
                    || s.matches(flow.dst, flow.first, flow.last)
            })
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
    /// The bucket read by the layout its uploader recorded: the layout
    /// record under `--prefix` (or `--key-template`'s fixed start), which
    /// names the template. Without a record: `--key-template`, else the
    /// default layout under `--prefix`. With neither flag, the record is
    /// looked for under `tcp-dumps/`, then at the bucket's top level and in
    /// each of its top-level folders (one list request; at most
    /// [`MAX_FOLDERS_SEARCHED`] folders): a bucket written with any template
    /// whose fixed start is at most one folder deep is read with no flag.
    pub async fn with_recorded_layout(
        client: Client,
        selection: Selection,
    ) -> Result<Self, ArchiveError> {
        let fallback = Self::fallback_template(&selection)?;
        let mut candidates = vec![fallback.static_prefix().to_owned()];
        if selection.prefix.is_none() && selection.key_template.is_none() {
            candidates.push(String::new());
            // Credentials limited to one prefix may not list the top level
            // or read elsewhere: the search then finds nothing there.
            match list_page(&client, &selection.bucket, "", true).await {
                Ok((_, folders)) => candidates.extend(
                    folders
                        .into_iter()
                        .filter(|f| f != fallback.static_prefix())
                        .take(MAX_FOLDERS_SEARCHED),
                ),
                Err(ArchiveError::AccessDenied { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut found = Vec::new();
        for (searched, prefix) in candidates.into_iter().enumerate() {
            let key = format!("{prefix}{LAYOUT_OBJECT}");
            let record = match read_layout_record(&client, &selection.bucket, &key).await {
                Err(ArchiveError::AccessDenied { .. }) if searched > 0 => None,
                other => other?,
            };
            if let Some(bytes) = record {
                let (_, template) =
                    LayoutRecord::parse(&bytes).map_err(|source| ArchiveError::LayoutRecord {
                        bucket: selection.bucket.clone(),
                        key,
                        source,
                    })?;
                found.push(template);
                if prefix == fallback.static_prefix() {
                    // The record where the flags (or the default) point wins.
                    break;
                }
            }
        }
        let template = match found.len() {
            0 => fallback,
            1 => found.remove(0),
            _ if found[0].static_prefix() == fallback.static_prefix() => found.remove(0),
            _ => {
                return Err(ArchiveError::SeveralLayouts {
                    bucket: selection.bucket.clone(),
                    prefixes: found
                        .iter()
                        .map(|t| format!("{:?}", t.static_prefix()))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        };
        Self::with_template(client, selection, template)
    }

    /// `--key-template`, or the default layout under `--prefix`.
    fn fallback_template(selection: &Selection) -> Result<KeyTemplate, ArchiveError> {
        if let Some(template) = &selection.key_template {
            return KeyTemplate::parse(template).map_err(|source| ArchiveError::KeyTemplate {
                template: template.clone(),
                source,
            });
        }
        let prefix = selection.prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
        let layout = format!("{prefix}{DEFAULT_LAYOUT}");
        KeyTemplate::parse(&layout).map_err(|e| ArchiveError::Layout {
            prefix: prefix.to_owned(),
            detail: e.to_string(),
        })
    }

    /// The bucket read by `template`, whatever the bucket records.
    pub fn with_template(
        client: Client,
        selection: Selection,
        template: KeyTemplate,
    ) -> Result<Self, ArchiveError> {
        for node in &selection.nodes {
            check_node(node)?;
        }
        // `--node a --node a` lists each capture of `a` once, not twice.
        let mut seen = BTreeSet::new();
        let mut selection = selection;
        selection.nodes.retain(|node| seen.insert(node.clone()));
        Ok(Self {
            client,
            selection,
            template,
        })
    }

    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// The key template the bucket is read by.
    pub fn template(&self) -> &KeyTemplate {
        &self.template
    }

    /// The nodes asked for, or every node with an index partition.
    pub async fn nodes(&self) -> Result<Vec<String>, ArchiveError> {
        if !self.selection.nodes.is_empty() {
            return Ok(self.selection.nodes.clone());
        }
        let base = index_node_prefix(self.template.static_prefix(), "");
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
                index: format!("{}{INDEX_DIR}", self.template.static_prefix()),
            });
        }
        Ok(nodes)
    }

    /// The captures overlapping the window, per node in time order, and the
    /// gaps in each node's coverage.
    pub async fn list_captures(&self) -> Result<Listing, ArchiveError> {
        let nodes = self.known_nodes().await?;
        let hours: BTreeSet<DateTime<Utc>> = self
            .selection
            .window
            .start_hours(self.selection.rotation)
            .into_iter()
            .collect();
        // Templates that put an unknown value first share one prefix for
        // every node and hour: it is listed once.
        let prefixes: BTreeSet<String> = nodes
            .iter()
            .flat_map(|node| {
                hours
                    .iter()
                    .map(|hour| self.template.hour_prefix(node, *hour))
            })
            .collect();
        let mut keys = Vec::new();
        for prefix in &prefixes {
            for key in self.list(prefix, false).await?.0 {
                let found = nodes.iter().find_map(|node| {
                    let capture = self.template.capture_of_node(&key, node)?;
                    Some((node, capture))
                });
                if let Some((node, capture)) = found
                    && hours.contains(&crate::window::floor_hour(capture.start()))
                {
                    keys.push((node.clone(), key));
                }
            }
        }
        // One download (and one place in a merge) per key.
        let mut seen = BTreeSet::new();
        keys.retain(|(_, key)| seen.insert(key.clone()));
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
                let prefix = index_hour_prefix(self.template.static_prefix(), node, *hour);
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

    /// The identity journals of every node (not only `--node`: the far end
    /// of a flow may be a pod elsewhere) for the window widened by
    /// [`JOURNAL_LOOKBACK`] and the rotation on both sides: the segment
    /// that covers the window's start began up to a period before it, and
    /// flows of the captures that overlap the window reach past it. Each
    /// object is read as a stream within the limits of
    /// [`crate::identity`]; one that is not a journal is named in
    /// `refused` and skipped, as is a segment of a newer schema (marked so:
    /// a selection is refused then, see the binary).
    pub async fn identities(&self) -> Result<Identities, ArchiveError> {
        let window = self.selection.window;
        let lookback = JOURNAL_LOOKBACK + self.selection.rotation + self.selection.rotation;
        let (from, to) = (window.from - lookback, window.to + self.selection.rotation);
        let base = journal_node_prefix(self.template.static_prefix(), "");
        let mut nodes = Vec::new();
        for folder in self.list(&base, true).await?.1 {
            if let Some(node) = folder
                .strip_prefix(&base)
                .and_then(|rest| rest.strip_suffix('/'))
                && check_node(node).is_ok()
            {
                nodes.push(node.to_owned());
            }
        }
        let hours = Window { from, to }.start_hours(TimeDelta::zero());
        let mut keys = Vec::new();
        for node in &nodes {
            for hour in &hours {
                let prefix = journal_hour_prefix(self.template.static_prefix(), node, *hour);
                keys.extend(self.list(&prefix, false).await?.0.into_iter().filter(|k| {
                    k.ends_with(JOURNAL_SUFFIX)
                        && bucket::journal_keys::parse_journal_file_name(file_name(k))
                            .is_some_and(|start| start <= to)
                }));
            }
        }
        let mut identities = Identities::new();
        let mut per_object = futures::stream::iter(keys)
            .map(|key| self.read_journal(key))
            .buffered(PARALLEL_HEADS);
        while let Some(object) = per_object.try_next().await? {
            match object {
                Ok(segment) if segment.header.from <= to && segment.header.to >= from => {
                    identities.add(segment);
                }
                Ok(_) => {}
                Err(refused) => identities.refused.push(refused),
            }
        }
        Ok(identities)
    }

    /// Where the journals are, for messages: `s3://<bucket>/<prefix>journal/`.
    pub fn journal_location(&self) -> String {
        format!(
            "s3://{}/{}{JOURNAL_DIR}",
            self.selection.bucket,
            self.template.static_prefix()
        )
    }

    /// One journal object read as it streams in.
    async fn read_journal(
        &self,
        key: String,
    ) -> Result<Result<ReadSegment, RefusedJournal>, ArchiveError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.selection.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.s3_error(&e, &format!("read {key}")))?;
        let mut body = out.body;
        let mut reader = SegmentReader::new();
        let refuse = |why: crate::identity::ReadError| -> Result<_, ArchiveError> {
            let newer_schema = why.is_newer_schema();
            Ok(Err(RefusedJournal {
                key: key.clone(),
                reason: if newer_schema {
                    why.to_string()
                } else {
                    format!("{why}; check who wrote this object")
                },
                newer_schema,
            }))
        };
        loop {
            let chunk = body.try_next().await.map_err(|e| ArchiveError::Journal {
                key: key.clone(),
                detail: e.to_string(),
            })?;
            let Some(chunk) = chunk else { break };
            if let Err(why) = reader.feed(&chunk) {
                return refuse(why);
            }
        }
        match reader.finish() {
            Ok(segment) => Ok(Ok(segment)),
            Err(why) => refuse(why),
        }
    }

    /// Downloads `captures` into `dir` (see [`destinations`]), in parallel,
    /// each checked against its metadata SHA-256 before it is kept. Returns
    /// the paths in the order of `captures`.
    pub async fn fetch(
        &self,
        captures: &[Capture],
        dir: &Path,
        progress: &indicatif::ProgressBar,
    ) -> Result<Vec<PathBuf>, ArchiveError> {
        let paths = destinations(self.template.static_prefix(), captures, dir)?;
        futures::stream::iter(captures.iter().zip(paths))
            .map(|(c, path)| self.download(c, path, progress))
            .buffered(PARALLEL_DOWNLOADS)
            .try_collect()
            .await
    }

    async fn download(
        &self,
        capture: &Capture,
        path: PathBuf,
        progress: &indicatif::ProgressBar,
    ) -> Result<PathBuf, ArchiveError> {
        let folder = path.parent().unwrap_or(Path::new(".")).to_owned();
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
        let expected = ObjectMetadata::from_headers(&out.metadata().cloned().unwrap_or_default())
            .map_err(|source| ArchiveError::NoChecksum {
                key: capture.key.clone(),
                source,
            })?
            .sha256;
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

    /// Of `keys` (captures a flow index names), those not in the bucket:
    /// never shipped (a flight recorder's node kept them and no pin covered
    /// them) or removed since.
    pub async fn absent(&self, keys: Vec<String>) -> Result<Vec<String>, ArchiveError> {
        let present = |key: String| async move {
            match self
                .client
                .head_object()
                .bucket(&self.selection.bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(_) => Ok(None),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(Some(key)),
                Err(e) => Err(self.s3_error(&e, &format!("read the metadata of {key}"))),
            }
        };
        let found: Vec<Option<String>> = futures::stream::iter(keys)
            .map(present)
            .buffered(PARALLEL_DOWNLOADS * 4)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
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
        // Without readable metadata (not uploaded by s3-tcpdump) the capture
        // is still listed, from its name; fetching it is refused.
        let metadata =
            ObjectMetadata::from_headers(&out.metadata().cloned().unwrap_or_default()).ok();
        let start = metadata
            .as_ref()
            .map(|m| m.capture_start)
            .or_else(|| {
                CaptureName::parse_ready(file_name(&key))
                    .ok()
                    .map(|n| n.start())
            })
            .unwrap_or_default();
        let end = metadata
            .as_ref()
            .and_then(|m| m.last_packet)
            .unwrap_or(start + self.selection.rotation);
        let drops = metadata.as_ref().and_then(|m| m.drops);
        Ok(Capture {
            packets: metadata.as_ref().map(|m| m.packets),
            kernel_drops: drops.map(|d| d.kernel),
            interface_drops: drops.map(|d| d.interface),
            size: out
                .content_length()
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(0),
            pcap: metadata.as_ref().map(|m| m.pcap.to_string()),
            sha256: metadata.map(|m| m.sha256),
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

    fn empty_window(&self) -> ArchiveError {
        let s = &self.selection;
        ArchiveError::EmptyWindow {
            bucket: s.bucket.clone(),
            prefix: self.template.static_prefix().to_owned(),
            from: crate::window::rfc3339(s.window.from),
            to: crate::window::rfc3339(s.window.to),
            nodes: if s.nodes.is_empty() {
                String::new()
            } else {
                format!(" for node {}", s.nodes.join(", "))
            },
        }
    }

    fn s3_error<E>(&self, err: &SdkError<E, HttpResponse>, action: &str) -> ArchiveError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        s3_error(&self.selection.bucket, err, action)
    }
}

/// The layout record's bytes, or `None` when the bucket has none there.
async fn read_layout_record(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, ArchiveError> {
    let action = || format!("read the layout record {key}");
    let out = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        Err(e) => return Err(s3_error(bucket, &e, &action())),
    };
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| ArchiveError::S3 {
            bucket: bucket.to_owned(),
            action: action(),
            detail: e.to_string(),
        })?
        .into_bytes();
    Ok(Some(bytes.to_vec()))
}

/// One page of keys (and, with `folders`, the common prefixes at `/`)
/// under `prefix`.
async fn list_page(
    client: &Client,
    bucket: &str,
    prefix: &str,
    folders: bool,
) -> Result<(Vec<String>, Vec<String>), ArchiveError> {
    let mut request = client.list_objects_v2().bucket(bucket).prefix(prefix);
    if folders {
        request = request.delimiter("/");
    }
    let page = request
        .send()
        .await
        .map_err(|e| s3_error(bucket, &e, &format!("list {prefix}")))?;
    Ok((
        page.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect(),
        page.common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(str::to_owned))
            .collect(),
    ))
}

/// An S3 error as `captures` shows it: the kind from the shared
/// classification ([`classify_code`]), the store's code and message as the
/// detail.
fn s3_error<E>(bucket: &str, err: &SdkError<E, HttpResponse>, action: &str) -> ArchiveError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let bucket = bucket.to_owned();
    // The store's code and message say what is wrong; the SDK's full
    // context (raw response and all) only when there is none.
    let detail = match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => DisplayErrorContext(err).to_string(),
    };
    let status = err.raw_response().map(|r| r.status().as_u16());
    match classify_code(err.code(), status) {
        FailureKind::NoSuchBucket => ArchiveError::NoSuchBucket { bucket },
        FailureKind::AccessDenied
        | FailureKind::InvalidCredentials
        | FailureKind::SignatureMismatch => ArchiveError::AccessDenied {
            bucket,
            action: action.to_owned(),
            detail,
        },
        _ => ArchiveError::S3 {
            bucket,
            action: action.to_owned(),
            detail,
        },
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

/// Where each capture is downloaded under `dir`, in the order of
/// `captures`: `<node>/<file>`; or, for keys of one node that share a file
/// name (`…/14/a/X.pcap` and `…/14/b/X.pcap`, which the uploader never
/// writes but any node's role can), `<node>/<the key's folders below the
/// node>/<file>` for each of them, so that no download overwrites another.
/// Those folders come from the bucket: each is made a plain folder name
/// ([`folder_name`]). Two captures that would still share a path are
/// refused, naming both keys.
pub fn destinations(
    prefix: &str,
    captures: &[Capture],
    dir: &Path,
) -> Result<Vec<PathBuf>, ArchiveError> {
    let mut per_name: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for c in captures {
        *per_name.entry((&c.node, file_name(&c.key))).or_default() += 1;
    }
    let mut taken: BTreeMap<PathBuf, &str> = BTreeMap::new();
    let mut paths = Vec::with_capacity(captures.len());
    for c in captures {
        let file = file_name(&c.key);
        let mut path = dir.join(folder_name(&c.node));
        if per_name[&(c.node.as_str(), file)] > 1 {
            let below_node = c
                .key
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix(c.node.as_str()))
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(&c.key);
            let folders = below_node.strip_suffix(file).unwrap_or(below_node);
            for folder in folders.split('/').filter(|f| !f.is_empty()) {
                path.push(folder_name(folder));
            }
        }
        path.push(folder_name(file));
        if let Some(first) = taken.insert(path.clone(), &c.key) {
            return Err(ArchiveError::SameDestination {
                first: first.to_owned(),
                second: c.key.clone(),
                path,
            });
        }
        paths.push(path);
    }
    Ok(paths)
}

/// A part of a key as one plain folder or file name: never `.`, `..` or
/// empty, without separators or control characters (`%XX` for those, and
/// for `%` itself, so that two different parts stay different).
fn folder_name(part: &str) -> String {
    match part {
        "" => "%".to_owned(),
        "." => "%2E".to_owned(),
        ".." => "%2E%2E".to_owned(),
        _ => {
            let mut name = String::with_capacity(part.len());
            for c in part.chars() {
                if c == '%' || c == '/' || c == '\\' || c.is_control() {
                    let mut utf8 = [0u8; 4];
                    for b in c.encode_utf8(&mut utf8).bytes() {
                        name.push_str(&format!("%{b:02X}"));
                    }
                } else {
                    name.push(c);
                }
            }
            name
        }
    }
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
    let actual = bucket::hex(&hasher.finalize());
    if actual.eq_ignore_ascii_case(expected) {
        return Ok(());
    }
    Err(ArchiveError::ChecksumMismatch {
        key: capture.key.clone(),
        expected: expected.to_owned(),
        actual,
    })
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
            kernel_drops: None,
            interface_drops: None,
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

    fn keyed(node: &str, key: &str) -> Capture {
        Capture {
            key: key.to_owned(),
            ..capture(node, "2026-11-27T14:00:00Z", "2026-11-27T14:01:00Z")
        }
    }

    #[test]
    fn keys_of_one_node_sharing_a_file_name_go_to_folders_of_their_own() {
        let file = "tcpdump-20261127T140000Z-0.pcap";
        let captures = [
            keyed("n", &format!("p/n/2026/11/27/14/a/{file}")),
            keyed("n", &format!("p/n/2026/11/27/14/b/{file}")),
            keyed("m", &format!("p/m/2026/11/27/14/{file}")),
        ];
        let paths = destinations("p/", &captures, Path::new("/d")).unwrap();
        assert_eq!(
            paths,
            [
                PathBuf::from(format!("/d/n/2026/11/27/14/a/{file}")),
                PathBuf::from(format!("/d/n/2026/11/27/14/b/{file}")),
                PathBuf::from(format!("/d/m/{file}")),
            ]
        );
    }

    #[test]
    fn key_folders_that_could_leave_the_download_folder_become_plain_names() {
        let file = "tcpdump-20261127T140000Z-0.pcap";
        let captures = [
            keyed("n", &format!("p/n/../../../etc/{file}")),
            keyed("n", &format!("p/n//./a\\b%\x1b/{file}")),
        ];
        let paths = destinations("p/", &captures, Path::new("/d")).unwrap();
        assert_eq!(
            paths,
            [
                PathBuf::from(format!("/d/n/%2E%2E/%2E%2E/%2E%2E/etc/{file}")),
                PathBuf::from(format!("/d/n/%2E/a%5Cb%25%1B/{file}")),
            ]
        );
        for path in &paths {
            assert!(
                path.components().all(|c| matches!(
                    c,
                    std::path::Component::RootDir | std::path::Component::Normal(_)
                )),
                "{path:?}"
            );
        }
    }

    #[test]
    fn one_key_twice_is_refused_naming_it_rather_than_downloaded_twice() {
        let key = "p/n/2026/11/27/14/tcpdump-20261127T140000Z-0.pcap";
        let e = destinations("p/", &[keyed("n", key), keyed("n", key)], Path::new("/d"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "{key} and {key} would both be downloaded to /d/n/"
            )),
            "{e}"
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
