//! Everything a ledger run sets up, in the order it is torn down: traffic,
//! launcher, uploader, proxy, garage and its namespace, the spool's tmpfs,
//! the work folder. Each part undoes itself on drop, also when the run
//! fails half-way.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use spool::SpoolLayout;

use super::fault_proxy::FaultProxy;
use super::garage_host::GarageHost;
use super::pipeline::{Launcher, Uploader};
use super::scenario::{FaultKind, Scenario, settings};
use super::traffic::Traffic;
use crate::fixtures::{pcap_bytes, sha256_hex};
use crate::net::free_port;

/// A tmpfs mounted for the spool, unmounted on drop.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    pub fn mount(path: &Path, size_mb: u64) -> anyhow::Result<Tmpfs> {
        std::fs::create_dir_all(path)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m,mode=0755")])
            .arg("s3td-chaos-spool")
            .arg(path)
            .status()?;
        if !status.success() {
            bail!("cannot mount a tmpfs on {}", path.display());
        }
        Ok(Tmpfs {
            path: path.to_owned(),
        })
    }

    /// Resizes it in place (never below what it holds).
    pub fn resize(&self, size_mb: u64) -> anyhow::Result<()> {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size_mb}m")])
            .arg(&self.path)
            .status()?;
        if !status.success() {
            bail!("cannot resize the tmpfs on {}", self.path.display());
        }
        Ok(())
    }

    /// Bytes in use.
    pub fn used(&self) -> u64 {
        nix::sys::statvfs::statvfs(&self.path)
            .map(|s| (s.blocks() - s.blocks_free()) * s.fragment_size())
            .unwrap_or(0)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// What was done to the pipeline, by kind, and what the faults saw.
#[derive(Debug, Default)]
pub struct FaultLog {
    pub injected: BTreeMap<FaultKind, u32>,
    pub uploader_kills_mid_multipart: u32,
    pub stalls_reported: u32,
    /// When tcpdump was stopped (SIGSTOP to SIGCONT, plus the time its
    /// kernel ring takes to drain): what the kernel dropped then was never
    /// seen by the capture.
    pub stopped: Vec<(std::time::SystemTime, std::time::SystemTime)>,
    pub stalls_noticed_again: u32,
    /// Budget drops the uploader logged during disk-full (files, bytes).
    pub disk_full_phases: u32,
    /// Things a fault found wrong on the spot (a process died, a stall was
    /// not reported, a slow upload never finished).
    pub problems: Vec<String>,
    /// Seconds the high-rate phase ran.
    pub high_rate_seconds: u64,
}

/// The pipeline and everything around it.
#[derive(Debug)]
pub struct Rig {
    pub scenario: Scenario,
    // Field order is teardown order.
    pub traffic: Traffic,
    pub launcher: Launcher,
    pub uploader: Uploader,
    pub proxy: FaultProxy,
    pub garage: GarageHost,
    pub tmpfs: Tmpfs,
    pub work: PathBuf,
    work_dir: Option<tempfile::TempDir>,
    pub spool: SpoolLayout,
    pub port: u16,
    pub rng: fastrand::Rng,
    pub faults: FaultLog,
    /// Synthetic captures placed in `ready/`: file name → SHA-256.
    pub synthetic: HashMap<String, String>,
    synthetic_serial: u32,
    /// True while the high-rate phase runs.
    pub high_rate: bool,
}

impl Rig {
    pub fn start(scenario: Scenario) -> anyhow::Result<Rig> {
        let work_dir = tempfile::Builder::new()
            .prefix("s3td-chaos.")
            .tempdir_in("/var/tmp")?;
        let work = work_dir.path().to_owned();
        let spool_root = work.join("spool");
        let tmpfs = Tmpfs::mount(&spool_root, settings::SPOOL_TMPFS_MB)?;
        let garage = GarageHost::start(&work.join("garage"), &scenario.repo, &scenario.garage)
            .context("cannot start garage in its network namespace")?;
        let proxy = FaultProxy::start(garage.addr)?;
        let port = free_port();
        let spool = SpoolLayout::new(&spool_root);
        let mut launcher = Launcher::new(&scenario.launcher, &spool_root, port, &work);
        launcher.start()?;
        let mut uploader = Uploader::new(
            &scenario.uploader,
            uploader_env(&garage, &proxy, &spool_root),
            &work.join("uploader.log"),
        );
        uploader.start(None)?;
        let traffic = Traffic::start(port, scenario.rate);
        let rng = fastrand::Rng::with_seed(scenario.seed);
        Ok(Rig {
            scenario,
            traffic,
            launcher,
            uploader,
            proxy,
            garage,
            tmpfs,
            work,
            work_dir: Some(work_dir),
            spool,
            port,
            rng,
            faults: FaultLog::default(),
            synthetic: HashMap::new(),
            synthetic_serial: 0,
            high_rate: false,
        })
    }

    /// The traffic's rate and payload for the current phase.
    pub fn base_traffic(&self) -> (u64, usize) {
        if self.high_rate {
            (self.scenario.high_rate, settings::HIGH_RATE_PAYLOAD)
        } else {
            (
                self.scenario.rate,
                crate::numbered::numbered_payload(0).len(),
            )
        }
    }

    pub fn restore_traffic(&self) {
        let (rate, payload) = self.base_traffic();
        self.traffic.set(rate, payload);
    }

    /// Writes synthetic captures of `bytes` bytes, named from `base` (a
    /// date no real capture has, so their keys are theirs alone), first in
    /// a folder beside the spool's, then renamed into `ready/` together.
    pub fn place_synthetic(
        &mut self,
        base: &str,
        count: u32,
        bytes: usize,
    ) -> anyhow::Result<Vec<String>> {
        let staging = self.spool.root().join("chaos-staging");
        std::fs::create_dir_all(&staging)?;
        let start = chrono::NaiveDateTime::parse_from_str(base, "%Y%m%dT%H%M%S")
            .context("synthetic base time")?;
        let mut names = Vec::new();
        for _ in 0..count {
            self.synthetic_serial += 1;
            let at = start + chrono::Duration::seconds(i64::from(self.synthetic_serial));
            let name = format!("{}", at.format("%Y%m%dT%H%M%SZ.pcap"));
            let data = pcap_bytes(bytes, &name);
            std::fs::write(staging.join(&name), &data)?;
            self.synthetic.insert(name.clone(), sha256_hex(&data));
            names.push(name);
        }
        for name in &names {
            std::fs::rename(staging.join(name), self.spool.ready().join(name))?;
        }
        Ok(names)
    }

    /// Waits until `ready/` holds none of these files, at most `limit`.
    pub fn wait_shipped(&self, names: &[String], limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if names.iter().all(|n| !self.spool.ready().join(n).exists()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// Files left in the spool's folders.
    pub fn spool_leftovers(&self) -> Vec<String> {
        self.spool
            .folders()
            .iter()
            .flat_map(|folder| {
                std::fs::read_dir(folder)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path().display().to_string())
            })
            .collect()
    }

    /// Waits until the spool's folders are empty, at most `limit`.
    pub fn wait_spool_empty(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.spool_leftovers().is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        false
    }

    pub fn keep_work(&mut self) -> PathBuf {
        if let Some(dir) = self.work_dir.take() {
            return dir.keep();
        }
        self.work.clone()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Processes first (fields drop in order after this), the folder
        // last: the tmpfs must be unmounted before the folder goes.
        if self.scenario.keep
            && let Some(dir) = self.work_dir.take()
        {
            let _ = dir.keep();
        }
    }
}

/// The uploader's settings: garage's bucket and key, through the proxy,
/// with timeouts short enough for a run of minutes.
fn uploader_env(garage: &GarageHost, proxy: &FaultProxy, spool: &Path) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("AWS_ACCESS_KEY_ID", garage.access_key().to_owned()),
        ("AWS_SECRET_ACCESS_KEY", garage.secret_key().to_owned()),
        ("AWS_REGION", "garage".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("S3_BUCKET", garage.bucket().to_owned()),
        ("S3_ENDPOINT_URL", proxy.endpoint()),
        ("S3_FORCE_PATH_STYLE", "true".to_owned()),
        ("SPOOL_DIR", spool.display().to_string()),
        ("NODE_NAME", "chaos-node".to_owned()),
        ("METRICS_ADDR", format!("127.0.0.1:{}", free_port())),
        ("LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "info".to_owned()),
        (
            "MULTIPART_THRESHOLD_MB",
            settings::MULTIPART_THRESHOLD_MB.to_string(),
        ),
        ("PART_SIZE_MB", settings::PART_SIZE_MB.to_string()),
        (
            "UPLOADER_READ_TIMEOUT_MS",
            settings::READ_TIMEOUT_MS.to_string(),
        ),
        ("UPLOADER_RETRY_MAX_MS", settings::RETRY_MAX_MS.to_string()),
        (
            "UPLOADER_PERMANENT_RETRY_MS",
            settings::PERMANENT_RETRY_MS.to_string(),
        ),
        ("UPLOADER_RESCAN_MS", settings::RESCAN_MS.to_string()),
        (
            "DRAIN_TIMEOUT_SECONDS",
            settings::DRAIN_TIMEOUT_SECONDS.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.retain(|_, v| !v.is_empty());
    env
}
