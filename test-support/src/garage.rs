//! A real garage from `scripts/garage-local` in a temporary folder on free
//! ports, and an S3 client that reads objects back (the tests may read; the
//! uploader may not).
//!
//! Without a garage binary the tests print SKIP and pass, except when
//! `CI=true`: then a missing prerequisite fails them.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use aws_sdk_s3::Client;

use crate::fixtures::Spool;
use crate::net::free_port;
use crate::prerequisites;
use crate::repo_root;

pub const DEFAULT_GARAGE: &str = "/root/.cache/s3-tcpdump/garage/bin/garage";

/// A running garage; stopped on drop.
#[derive(Debug)]
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
        self.env = read_env_file(self.dir.path()).unwrap();
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
        reading_client(
            self.endpoint(),
            &self.env["AWS_ACCESS_KEY_ID"],
            &self.env["AWS_SECRET_ACCESS_KEY"],
        )
    }

    /// `program` with this garage's endpoint, bucket and keys, and no other
    /// AWS or S3 setting of this environment (no shared config, no
    /// instance metadata, no `AWS_CA_BUNDLE`).
    pub fn s3_client(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        for (key, _) in std::env::vars() {
            if key.starts_with("AWS_") || key.starts_with("S3_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(&self.env)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
        cmd
    }

    /// `uploader` (the test crate's binary) with this garage's settings, a test-friendly retry
    /// schedule, and a clean AWS environment.
    pub fn uploader(&self, uploader: &str, spool: &Spool) -> Command {
        let mut cmd = self.s3_client(uploader);
        cmd.env("SPOOL_DIR", spool.root())
            .env("NODE_NAME", "test-node")
            .env("METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("UPLOADER_RETRY_MAX_MS", "300")
            .env("UPLOADER_PERMANENT_RETRY_MS", "500")
            .env("UPLOADER_RESCAN_MS", "200")
            .env("DRAIN_TIMEOUT_SECONDS", "20");
        cmd
    }

    /// Puts `bytes` at `key` in the test bucket, as any writer with the
    /// bucket's rights could.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) {
        self.client()
            .await
            .put_object()
            .bucket(self.bucket())
            .key(key)
            .body(bytes.into())
            .send()
            .await
            .unwrap();
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

/// An S3 client for a garage at `endpoint` with its key: the tests (and the
/// fault ledger) read objects back with it; the uploader may not.
pub fn reading_client(endpoint: &str, access_key: &str, secret_key: &str) -> Client {
    let creds = aws_sdk_s3::config::Credentials::new(access_key, secret_key, None, None, "test");
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("garage"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(creds)
        // The SDK is built without an HTTP client of its own.
        .http_client(s3_http::marked_http_client().unwrap())
        .build();
    Client::from_conf(conf)
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/garage-local"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// The variables `scripts/garage-local start DIR` writes to `DIR/env`
/// (`export KEY=VALUE` lines) for its clients.
pub fn read_env_file(dir: &Path) -> std::io::Result<HashMap<String, String>> {
    let env = std::fs::read_to_string(dir.join("env"))?;
    Ok(env
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}
