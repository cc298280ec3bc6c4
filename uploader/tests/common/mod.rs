//! Test harness: a real garage from `scripts/garage-local` in a temporary
//! folder on free ports, a spool, the real `uploader` binary, and an S3
//! client that reads objects back (the tests may read; the uploader may not).
//!
//! Without a garage binary the tests print SKIP and pass, except when
//! `CI=true`: then a missing prerequisite fails them.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};

pub const DEFAULT_GARAGE: &str = "/root/.cache/s3-tcpdump/garage/bin/garage";

#[path = "../../../tests/support/prerequisites.rs"]
pub mod prerequisites;
pub mod throttle;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running garage; stopped on drop.
pub struct Garage {
    pub dir: tempfile::TempDir,
    pub port: u16,
    rpc_port: u16,
    pub env: HashMap<String, String>,
}

impl Garage {
    /// Starts garage, or returns `None` after printing why the test skips.
    pub fn start(test: &str) -> Option<Garage> {
        let bin = std::env::var("GARAGE_BIN").unwrap_or_else(|_| DEFAULT_GARAGE.to_owned());
        let missing = (!Path::new(&bin).is_file()).then(|| {
            format!(
                "no garage binary at {bin} (cargo install garage --locked --root /root/.cache/s3-tcpdump/garage, or set GARAGE_BIN)"
            )
        });
        if !prerequisites::present_or_skip(test, missing) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut garage = Garage {
            dir,
            port: free_port(),
            rpc_port: free_port(),
            env: HashMap::new(),
        };
        garage.run_start();
        Some(garage)
    }

    fn run_start(&mut self) {
        let out = Command::new(repo_root().join("scripts/garage-local"))
            .arg("start")
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .arg(self.rpc_port.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "garage-local start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(self.dir.path().join("env")).unwrap();
        self.env = env
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    }

    pub fn stop(&self) {
        let out = Command::new(repo_root().join("scripts/garage-local"))
            .arg("stop")
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts it again on the same data, port and key.
    pub fn restart(&mut self) {
        self.run_start();
    }

    pub fn bucket(&self) -> &str {
        &self.env["S3_BUCKET"]
    }

    pub fn endpoint(&self) -> &str {
        &self.env["S3_ENDPOINT_URL"]
    }

    /// A reading client for the test.
    pub async fn client(&self) -> Client {
        let creds = aws_sdk_s3::config::Credentials::new(
            &self.env["AWS_ACCESS_KEY_ID"],
            &self.env["AWS_SECRET_ACCESS_KEY"],
            None,
            None,
            "test",
        );
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("garage"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(creds)
            // The SDK is built without an HTTP client of its own.
            .http_client(uploader::connect::marked_http_client().unwrap())
            .build();
        Client::from_conf(conf)
    }

    /// The uploader with this garage's settings, a test-friendly retry
    /// schedule, and a clean AWS environment.
    pub fn uploader(&self, spool: &Spool) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_uploader"));
        for (key, _) in std::env::vars() {
            if key.starts_with("AWS_") || key.starts_with("S3_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(&self.env)
            .env("SPOOL_DIR", spool.root())
            .env("NODE_NAME", "test-node")
            .env("METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("UPLOADER_RETRY_MAX_MS", "300")
            .env("UPLOADER_PERMANENT_RETRY_MS", "500")
            .env("UPLOADER_RESCAN_MS", "200")
            .env("DRAIN_TIMEOUT_SECONDS", "20");
        cmd
    }

    pub async fn get(&self, key: &str) -> Option<(Vec<u8>, HashMap<String, String>)> {
        let out = self
            .client()
            .await
            .get_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
            .ok()?;
        let meta = out.metadata().cloned().unwrap_or_default();
        let body = out.body.collect().await.unwrap().into_bytes().to_vec();
        Some((body, meta))
    }

    /// The keys of captures: not flow indexes, not the checksum probe.
    pub async fn capture_keys(&self) -> Vec<String> {
        let mut keys = self.keys().await;
        keys.retain(|k| k.ends_with(".pcap"));
        keys
    }

    pub async fn keys(&self) -> Vec<String> {
        let out = self
            .client()
            .await
            .list_objects_v2()
            .bucket(self.bucket())
            .send()
            .await
            .unwrap();
        let mut keys: Vec<String> = out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/garage-local"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// A spool with `active/` and `ready/` (the launcher makes them).
pub struct Spool {
    pub dir: tempfile::TempDir,
}

impl Spool {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("active")).unwrap();
        std::fs::create_dir(dir.path().join("ready")).unwrap();
        Spool { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn ready(&self) -> PathBuf {
        self.root().join("ready")
    }

    /// Writes a synthetic pcap of about `size` bytes into `active/`, then
    /// renames it into `ready/` like the launcher; returns its bytes.
    pub fn add(&self, name: &str, size: usize) -> Vec<u8> {
        let bytes = pcap_bytes(size, name);
        let active = self.root().join("active").join(name);
        std::fs::write(&active, &bytes).unwrap();
        std::fs::rename(&active, self.ready().join(name)).unwrap();
        bytes
    }

    pub fn ready_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.ready())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// A valid little-endian pcap (Ethernet link type) of about `size` bytes,
/// with pseudo-random payloads seeded by `seed`.
pub fn pcap_bytes(size: usize, seed: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 2048);
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let mut state: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
    let mut ts = 0u32;
    while out.len() < size {
        let len = 1024u32;
        ts += 1;
        out.extend_from_slice(&ts.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        for _ in 0..(len / 32) {
            state = Sha256::digest(state).into();
            out.extend_from_slice(&state);
        }
    }
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A child process killed on drop; its stderr goes to a file to read back.
pub struct Running {
    pub child: Child,
    pub log: PathBuf,
    pub metrics_addr: SocketAddr,
    _log_dir: tempfile::TempDir,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("stderr.log");
        let metrics_addr = cmd
            .get_envs()
            .find(|(k, _)| *k == "METRICS_ADDR")
            .and_then(|(_, v)| v)
            .map(|v| v.to_string_lossy().parse().unwrap())
            .unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Running {
            child,
            log,
            metrics_addr,
            _log_dir: log_dir,
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Waits for exit; panics after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "uploader did not exit; log:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn http(&self, path: &str) -> (u16, String) {
        http_get(self.metrics_addr, path)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.0 GET; (0, "") when nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls `condition` until it holds; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A capture name for a start time `ago` before now.
pub fn name_started_ago(ago: Duration) -> (String, chrono::DateTime<chrono::Utc>) {
    let start = chrono::Utc::now() - chrono::Duration::from_std(ago).unwrap();
    (format!("{}", start.format("%Y%m%dT%H%M%SZ.pcap")), start)
}
