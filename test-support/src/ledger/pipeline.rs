//! The pipeline under test: the release launcher (one run after another,
//! as the kubelet restarts a container) and the release uploader, both on
//! one spool, both logging JSON lines into the work folder.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::scenario::settings;

/// One run of the launcher, from its start to its exit.
#[derive(Debug, Clone)]
pub struct LauncherRun {
    pub started: SystemTime,
    pub ended: Option<SystemTime>,
    pub log: PathBuf,
    /// How it ended: `None` while running.
    pub end: Option<RunEnd>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// SIGTERM, as Kubernetes stops a container: tcpdump printed its counts.
    Stopped,
    /// tcpdump was SIGKILLed: it printed nothing.
    TcpdumpKilled,
}

/// tcpdump's own closing counts, from a launcher run's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpdumpCounts {
    pub captured: u64,
    pub dropped_by_kernel: u64,
}

#[derive(Debug)]
pub struct Launcher {
    bin: PathBuf,
    spool: PathBuf,
    port: u16,
    logs: PathBuf,
    child: Option<Child>,
    pub runs: Vec<LauncherRun>,
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX))
}

impl Launcher {
    pub fn new(bin: &Path, spool: &Path, port: u16, logs: &Path) -> Self {
        Self {
            bin: bin.to_owned(),
            spool: spool.to_owned(),
            port,
            logs: logs.to_owned(),
            child: None,
            runs: Vec::new(),
        }
    }

    /// Starts a run; returns once tcpdump writes into `active/`.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = self
            .logs
            .join(format!("launcher-{}.log", self.runs.len() + 1));
        let child = Command::new(&self.bin)
            .arg("--spool-dir")
            .arg(&self.spool)
            .args(["--interface", "lo"])
            .args(["--filter", &format!("udp dst port {}", self.port)])
            .args(["--rotate-seconds", &settings::ROTATE_SECONDS.to_string()])
            .args(["--buffer-kib", &settings::BUFFER_KIB.to_string()])
            .args(["--max-spool-mb", &settings::SPOOL_BUDGET_MB.to_string()])
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            // Any free port: the ledger may run beside other tests.
            .env("LAUNCHER_METRICS_ADDR", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .context("cannot start the launcher")?;
        self.runs.push(LauncherRun {
            started: SystemTime::now(),
            ended: None,
            log,
            end: None,
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.tcpdump_pid().is_none()
            || !self.log_says(spool::logging::counted::TCPDUMP_LISTENING)
        {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "the launcher exited at start ({status}); see {}",
                    self.log().display()
                );
            }
            if Instant::now() > deadline {
                bail!("tcpdump did not start listening within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn log(&self) -> PathBuf {
        self.runs.last().map(|r| r.log.clone()).unwrap_or_default()
    }

    /// Whether the current run's log has a line containing `text`.
    pub fn log_says(&self, text: &str) -> bool {
        std::fs::read_to_string(self.log()).is_ok_and(|log| log.contains(text))
    }

    /// How many lines of the current run's log contain `text`.
    pub fn log_count(&self, text: &str) -> usize {
        std::fs::read_to_string(self.log())
            .map(|log| log.lines().filter(|l| l.contains(text)).count())
            .unwrap_or(0)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The tcpdump the launcher runs (a child process named tcpdump).
    pub fn tcpdump_pid(&self) -> Option<Pid> {
        let parent = self.child.as_ref()?.id().to_string();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid …
            let Some((left, right)) = stat.rsplit_once(')') else {
                continue;
            };
            let ppid = right.split_whitespace().nth(1);
            if left.ends_with("(tcpdump") && ppid == Some(parent.as_str()) {
                let pid: i32 = entry.file_name().to_string_lossy().parse().ok()?;
                return Some(Pid::from_raw(pid));
            }
        }
        None
    }

    /// Sends `signal` to tcpdump.
    pub fn signal_tcpdump(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self.tcpdump_pid().context("no tcpdump to signal")?;
        kill(pid, signal)?;
        Ok(())
    }

    /// Waits for the launcher to exit (after tcpdump died or a SIGTERM).
    fn wait(&mut self, end: RunEnd, limit: Duration) -> anyhow::Result<()> {
        let child = self.child.as_mut().context("no launcher running")?;
        let deadline = Instant::now() + limit;
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the launcher did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = None;
        if let Some(run) = self.runs.last_mut() {
            run.ended = Some(SystemTime::now());
            run.end = Some(end);
        }
        Ok(())
    }

    /// Stops it as Kubernetes does: SIGTERM, then wait.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("no launcher running")?;
        kill(pid_of(child), Signal::SIGTERM)?;
        self.wait(RunEnd::Stopped, Duration::from_secs(30))
    }

    /// SIGKILLs tcpdump; the launcher hands over what is left and exits.
    pub fn kill_tcpdump(&mut self) -> anyhow::Result<()> {
        // Its counts first: SIGUSR1 makes tcpdump print them and go on, so
        // what the kernel dropped in this run (a stopped tcpdump's ring
        // overflows) is known although the run ends by SIGKILL.
        let printed = self.log_count("dropped by kernel");
        self.signal_tcpdump(Signal::SIGUSR1)?;
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.log_count("dropped by kernel") == printed && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal_tcpdump(Signal::SIGKILL)?;
        self.wait(RunEnd::TcpdumpKilled, Duration::from_secs(30))
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = kill(pid_of(child), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// tcpdump's closing counts in a launcher log (JSON lines with target
/// `tcpdump`): `N packets captured`, `N packets dropped by kernel`.
pub fn tcpdump_counts(log: &str) -> Option<TcpdumpCounts> {
    let mut counts = TcpdumpCounts::default();
    let mut seen = false;
    for line in log.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(message) = event.get("message").and_then(|m| m.as_str()) else {
            continue;
        };
        // At exit tcpdump prints one count a line (the launcher may add
        // advice after it); on SIGUSR1, all three on one line after
        // `tcpdump: `, separated by commas.
        for part in message.trim_start_matches("tcpdump: ").split(", ") {
            let Some((number, what)) = part.trim().split_once(' ') else {
                continue;
            };
            let Ok(n) = number.parse::<u64>() else {
                continue;
            };
            if what.starts_with("packets captured") || what.starts_with("packet captured") {
                counts.captured = n;
                seen = true;
            } else if what.starts_with("packets dropped by kernel")
                || what.starts_with("packet dropped by kernel")
            {
                counts.dropped_by_kernel = n;
            }
        }
    }
    seen.then_some(counts)
}

/// The uploader, started again after every kill; all its runs log into one
/// file.
#[derive(Debug)]
pub struct Uploader {
    bin: PathBuf,
    env: HashMap<String, String>,
    log: PathBuf,
    child: Option<Child>,
    pub starts: u32,
}

impl Uploader {
    pub fn new(bin: &Path, env: HashMap<String, String>, log: &Path) -> Self {
        Self {
            bin: bin.to_owned(),
            env,
            log: log.to_owned(),
            child: None,
            starts: 0,
        }
    }

    /// Starts it with the normal budget, or with `budget_mb`.
    pub fn start(&mut self, budget_mb: Option<u64>) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.bin);
        for (key, _) in std::env::vars() {
            if key.starts_with("AWS_") || key.starts_with("S3_") {
                cmd.env_remove(key);
            }
        }
        let log = File::options().create(true).append(true).open(&self.log)?;
        cmd.envs(&self.env)
            .env(
                "MAX_SPOOL_MB",
                budget_mb.unwrap_or(settings::SPOOL_BUDGET_MB).to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(cmd.spawn().context("cannot start the uploader")?);
        self.starts += 1;
        Ok(())
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The running uploader's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn kill(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("no uploader running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// SIGTERM and wait for its drain to end.
    pub fn stop(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("no uploader running")?;
        kill(pid_of(&child), Signal::SIGTERM)?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the uploader did not exit within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tcpdump_counts_from_json_log_lines() {
        let log = r#"{"timestamp":"t","level":"INFO","message":"starting tcpdump"}
{"timestamp":"t","level":"INFO","message":"1234 packets captured","target":"tcpdump"}
{"timestamp":"t","level":"INFO","message":"1240 packets received by filter","target":"tcpdump"}
{"timestamp":"t","level":"INFO","message":"0 packets dropped by kernel","dropped":0,"target":"tcpdump"}"#;
        assert_eq!(
            tcpdump_counts(log),
            Some(TcpdumpCounts {
                captured: 1234,
                dropped_by_kernel: 0
            })
        );
        assert_eq!(tcpdump_counts("{\"message\":\"killed\"}"), None);
        let on_sigusr1 = r#"{"message":"tcpdump: 547383 packets captured, 1610150 packets received by filter, 515384 packets dropped by kernel","target":"tcpdump"}"#;
        assert_eq!(
            tcpdump_counts(on_sigusr1),
            Some(TcpdumpCounts {
                captured: 547_383,
                dropped_by_kernel: 515_384
            })
        );
        let with_advice = r#"{"message":"12 packets captured"}
{"message":"224458 packets dropped by kernel (raise --buffer-kib, shorten --snaplen or narrow the filter)"}"#;
        assert_eq!(
            tcpdump_counts(with_advice),
            Some(TcpdumpCounts {
                captured: 12,
                dropped_by_kernel: 224_458
            })
        );
    }
}
