//! Child processes under test: signalled, waited for, killed on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sends `signal` to `child`.
pub fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, signal).unwrap();
}

/// A child process (a command with `METRICS_ADDR` set, like the uploader)
/// killed on drop; its stderr goes to a file to read back.
#[derive(Debug)]
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

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        signal(&self.child, sig);
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
                "the process did not exit; log:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn http(&self, path: &str) -> (u16, String) {
        crate::net::http_get(self.metrics_addr, path)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The uploader at `binary` on `spool`, serving its admin port on
/// `metrics_addr`, with a store that refuses every connection (a free
/// local port) and the caller's AWS and S3 settings removed: for tests of
/// the admin port and the metrics, which need no store.
pub fn uploader_with_unreachable_store(
    binary: &str,
    spool: &crate::Spool,
    metrics_addr: SocketAddr,
) -> Command {
    let mut cmd = Command::new(binary);
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || key.starts_with("S3_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("SPOOL_DIR", spool.root())
        .env("NODE_NAME", "test-node")
        .env("S3_BUCKET", "no-store")
        .env(
            "S3_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", crate::free_port()),
        )
        .env("S3_FORCE_PATH_STYLE", "true")
        .env("AWS_REGION", "garage")
        .env("AWS_ACCESS_KEY_ID", "GKunreachablestore")
        .env("AWS_SECRET_ACCESS_KEY", "0".repeat(64))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("METRICS_ADDR", metrics_addr.to_string());
    cmd
}
