//! The uploader's Prometheus metrics, all under the `s3_tcpdump_uploader_`
//! prefix. Exposition is prometheus-client's; see `admin.rs` for the route.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::failure::FailureKind;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub uploaded_files: Counter,
    pub uploaded_bytes: Counter,
    pub failures: Family<KindLabel, Counter>,
    pub retries: Counter,
    pub deferrals: Counter,
    pub dropped_files: Counter,
    pub dropped_bytes: Counter,
    pub dropped_non_capture_files: Counter,
    pub dropped_non_capture_bytes: Counter,
    pub spool_files: Gauge,
    pub spool_bytes: Gauge,
    pub oldest_pending_age_seconds: Gauge,
    pub upload_duration: Histogram,
    pub scans: Counter,
    pub damaged_captures: Counter,
    pub unconfirmed_checksums: Counter,
    pub lost_watch_events: Counter,
    pub quarantined: Counter,
    pub admin_connections_evicted: Counter,
    /// The flight recorder's (`--upload-mode pinned`).
    pub pins: PinMetrics,
}

/// The flight recorder's metrics: what the ring let expire, what pins
/// shipped, and how the pins are read.
#[derive(Debug, Default)]
pub struct PinMetrics {
    pub expired_files: Counter,
    pub expired_bytes: Counter,
    pub active: Gauge,
    pub polls: Counter,
    pub poll_failures: Counter,
    pub refused: Counter,
    pub uploaded_files: Counter,
    pub partly_expired: Counter,
    pub ring_indexes: Counter,
}

impl PinMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "captures_expired",
            "Pinned mode: captures no pin covered, deleted unsent as the ring's oldest to keep the spool under --max-spool-mb (expected, not a loss)",
            self.expired_files.clone(),
        );
        registry.register_with_unit(
            "captures_expired",
            "Pinned mode: bytes of captures no pin covered, deleted unsent as the ring's oldest",
            Unit::Bytes,
            self.expired_bytes.clone(),
        );
        registry.register(
            "pins_active",
            "Pinned mode: pins in force that select this node (not expired)",
            self.active.clone(),
        );
        registry.register(
            "pin_polls",
            "Pinned mode: lists of the bucket's pins/ prefix",
            self.polls.clone(),
        );
        registry.register(
            "pin_poll_failures",
            "Pinned mode: lists or reads of pins that failed (the pins known before stay in force)",
            self.poll_failures.clone(),
        );
        registry.register(
            "pins_refused",
            "Pinned mode: pin objects refused (invalid, too large, newer schema, or past the limit of pins); each is logged with the reason",
            self.refused.clone(),
        );
        registry.register(
            "pinned_uploaded_files",
            "Pinned mode: captures shipped because a pin covered them",
            self.uploaded_files.clone(),
        );
        registry.register(
            "ring_indexes_uploaded",
            "Pinned-with-index mode: flow indexes shipped for captures no pin covered (the captures stay on the node)",
            self.ring_indexes.clone(),
        );
        registry.register(
            "pins_partly_expired",
            "Pinned mode: pins that arrived after part of their window had already expired on this node (logged with what was gone)",
            self.partly_expired.clone(),
        );
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("s3_tcpdump_uploader");
        let uploaded_files = Counter::default();
        let uploaded_bytes = Counter::default();
        let failures = Family::<KindLabel, Counter>::default();
        let retries = Counter::default();
        let deferrals = Counter::default();
        registry.register(
            "deferrals",
            "Turns of a capture that failed: it gave its upload lane up and went to the back of the queue, to be tried again after its own growing delay",
            deferrals.clone(),
        );
        let dropped_files = Counter::default();
        let dropped_bytes = Counter::default();
        let dropped_non_capture_files = Counter::default();
        let dropped_non_capture_bytes = Counter::default();
        registry.register(
            "dropped_non_capture_files",
            "Files that are not captures (quarantined, or foreign names in ready/) deleted to keep the spool under --max-spool-mb, before any capture",
            dropped_non_capture_files.clone(),
        );
        registry.register_with_unit(
            "dropped_non_capture",
            "Bytes of files that are not captures deleted to keep the spool under --max-spool-mb",
            Unit::Bytes,
            dropped_non_capture_bytes.clone(),
        );
        let spool_files = Gauge::default();
        let spool_bytes = Gauge::default();
        let oldest_pending_age_seconds = Gauge::default();
        // 10 ms … ~5 min.
        let upload_duration = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        let scans = Counter::default();
        let damaged_captures = Counter::default();
        let unconfirmed_checksums = Counter::default();
        let lost_watch_events = Counter::default();
        let quarantined = Counter::default();
        let admin_connections_evicted = Counter::default();
        registry.register(
            "admin_connections_evicted",
            "Admin port connections closed before their request head arrived, to make room for a new one (all 64 slots taken)",
            admin_connections_evicted.clone(),
        );
        registry.register(
            "quarantined",
            "Entries of ready/ that were not regular files (FIFOs, sockets, devices, symlinks, folders), moved to quarantine/ unread",
            quarantined.clone(),
        );
        registry.register(
            "lost_watch_events",
            "Times the kernel dropped ready/'s change events (inotify queue overflow) or the watch failed; each is answered with a full scan",
            lost_watch_events.clone(),
        );
        registry.register(
            "unconfirmed_checksums",
            "Uploads the store accepted without returning the SHA-256 sent with them (not verified by the store)",
            unconfirmed_checksums.clone(),
        );
        registry.register(
            "damaged_captures",
            "Captures whose pcap structure is damaged (uploaded all the same, marked `pcap: damaged` in their metadata)",
            damaged_captures.clone(),
        );
        registry.register(
            "scans",
            "Scans of ready/: one per capture arrival and one per rescan interval; an idle spool adds only the latter",
            scans.clone(),
        );
        registry.register(
            "uploaded_files",
            "Captures uploaded, verified and deleted locally",
            uploaded_files.clone(),
        );
        registry.register_with_unit(
            "uploaded",
            "Bytes of captures uploaded and verified",
            Unit::Bytes,
            uploaded_bytes.clone(),
        );
        registry.register(
            "failures",
            "Failed upload attempts, by the label kind (connection, timeout, server, throttled, checksum_mismatch, access_denied, no_such_bucket, …): transient ones are retried fast, others slowly",
            failures.clone(),
        );
        registry.register(
            "retries",
            "Upload attempts that were retries",
            retries.clone(),
        );
        registry.register(
            "dropped_files",
            "Captures deleted unsent to keep the spool under --max-spool-mb",
            dropped_files.clone(),
        );
        registry.register_with_unit(
            "dropped",
            "Bytes of captures deleted unsent to keep the spool under --max-spool-mb",
            Unit::Bytes,
            dropped_bytes.clone(),
        );
        registry.register(
            "spool_files",
            "Files in the spool (active, ready and quarantine)",
            spool_files.clone(),
        );
        registry.register_with_unit(
            "spool",
            "Bytes in the spool (active, ready and quarantine)",
            Unit::Bytes,
            spool_bytes.clone(),
        );
        registry.register_with_unit(
            "oldest_pending_age",
            "Age of the oldest capture waiting in ready/, from its start time (0 when none)",
            Unit::Seconds,
            oldest_pending_age_seconds.clone(),
        );
        registry.register_with_unit(
            "upload_duration",
            "Time from picking a capture up to its verified upload, the retries of that turn included",
            Unit::Seconds,
            upload_duration.clone(),
        );
        let pins = PinMetrics::default();
        pins.register(&mut registry);
        Self {
            registry,
            uploaded_files,
            uploaded_bytes,
            failures,
            retries,
            deferrals,
            dropped_files,
            dropped_bytes,
            dropped_non_capture_files,
            dropped_non_capture_bytes,
            spool_files,
            spool_bytes,
            oldest_pending_age_seconds,
            upload_duration,
            scans,
            damaged_captures,
            unconfirmed_checksums,
            lost_watch_events,
            quarantined,
            admin_connections_evicted,
            pins,
        }
    }

    pub fn failure(&self, kind: FailureKind) {
        self.failures
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc();
    }

    /// What `/metrics` answers, as text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        admin_http::encode(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
