//! Each fault, injected into a running [`Rig`] and undone before the next:
//! every fault leaves garage running, the link whole, the proxy passing,
//! the launcher and the uploader up, the traffic at its phase's rate.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::Signal;

use super::fault_proxy::Mode;
use super::rig::Rig;
use super::scenario::{FaultKind, settings};
use crate::inotify::{SmallInotifyQueue, wait_for_inotify_instance};

/// Synthetic capture names, by fault: dates no real capture has.
const BURST_BASE: &str = "20200101T000000";
const MULTIPART_BASE: &str = "20210101T000000";
const SLOW_LINK_BASE: &str = "20220101T000000";
/// The capture the uploader is killed in the middle of: three parts.
const MULTIPART_CAPTURE_BYTES: usize = 12 * 1024 * 1024;
/// A synthetic burst capture: a header and one 1 KiB record.
const BURST_CAPTURE_BYTES: usize = 1_000;

impl Rig {
    fn pause(&mut self, range: std::ops::Range<u64>) -> Duration {
        let ms = self.rng.u64(range.start * 1000..range.end * 1000);
        let pause = Duration::from_millis(ms);
        std::thread::sleep(pause);
        pause
    }

    /// Injects one fault and undoes it.
    pub fn inject(&mut self, kind: FaultKind) -> anyhow::Result<()> {
        *self.faults.injected.entry(kind).or_insert(0) += 1;
        match kind {
            FaultKind::UploaderKill => self.kill_uploader(),
            FaultKind::GarageRestart => {
                self.garage.stop_garage()?;
                self.pause(3..10);
                self.garage.start_garage()
            }
            FaultKind::Partition => {
                self.garage.cut_link()?;
                self.pause(10..25);
                self.garage.restore_link()
            }
            FaultKind::Hang => self.proxy_fault(Mode::Hang, 5..20),
            FaultKind::Reset => self.proxy_fault(Mode::Reset, 4..10),
            FaultKind::Delay => {
                let delay = Duration::from_millis(self.rng.u64(500..3_000));
                self.proxy_fault(Mode::Delay(delay), 5..10)
            }
            FaultKind::Throttle => {
                self.proxy_fault(Mode::Throttle(settings::THROTTLE_BYTES_PER_SECOND), 5..15)
            }
            FaultKind::Slowdown => self.proxy_fault(Mode::SlowDown, 3..8),
            FaultKind::Flip => self.proxy_fault(Mode::Flip, 4..10),
            FaultKind::DiskFull => self.disk_full(),
            FaultKind::Burst => self.burst(),
            FaultKind::TcpdumpKill => self.kill_tcpdump(),
            FaultKind::TcpdumpStop => self.stop_tcpdump(),
            FaultKind::SlowLink => self.slow_link(),
        }
    }

    fn proxy_fault(&mut self, mode: Mode, seconds: std::ops::Range<u64>) -> anyhow::Result<()> {
        self.proxy.set_mode(mode);
        self.pause(seconds);
        self.proxy.set_mode(Mode::Pass);
        Ok(())
    }

    /// SIGKILL at a random moment, or (every other time) in the middle of
    /// a multipart upload of a capture placed for it; then a new start, as
    /// the kubelet restarts a container.
    fn kill_uploader(&mut self) -> anyhow::Result<()> {
        if self.rng.bool() {
            let placed = self.place_synthetic(MULTIPART_BASE, 1, MULTIPART_CAPTURE_BYTES)?;
            let records: Vec<_> = placed
                .iter()
                .map(|n| self.spool.state().join(format!("{n}.json")))
                .collect();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !records.iter().any(|r| r.exists()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            // Somewhere among its parts.
            std::thread::sleep(Duration::from_millis(self.rng.u64(0..1_500)));
        } else {
            self.pause(0..3);
        }
        let mid_multipart = std::fs::read_dir(self.spool.state())
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".pcap.json"))
            })
            .unwrap_or(false);
        self.uploader.kill()?;
        if mid_multipart {
            self.faults.uploader_kills_mid_multipart += 1;
        }
        std::thread::sleep(Duration::from_millis(self.rng.u64(0..1_500)));
        self.uploader.start(None)
    }

    /// N captures renamed into `ready/` at once, watched by an uploader
    /// whose inotify queue holds far fewer events: the kernel drops events
    /// (the uploader must say so) and every capture must still be shipped.
    fn burst(&mut self) -> anyhow::Result<()> {
        {
            let _small = SmallInotifyQueue::lower_to(settings::BURST_QUEUE_EVENTS)
                .context("cannot lower fs.inotify.max_queued_events for the burst")?;
            if self.uploader.is_running() {
                self.uploader.kill()?;
            }
            self.uploader.start(None)?;
            let pid = self.uploader.pid().context("the uploader did not start")?;
            if !wait_for_inotify_instance(pid, Duration::from_secs(30)) {
                self.faults
                    .problems
                    .push("burst: the uploader made no inotify watch within 30 s".to_owned());
            }
        }
        let count = self.scenario.burst_files;
        self.place_synthetic(BURST_BASE, count, BURST_CAPTURE_BYTES)
            .map(drop)
    }

    /// S3 down and a small spool: the uploader restarted with a tiny
    /// budget, the tmpfs shrunk to a little above what it holds, traffic
    /// raised so the spool fills within seconds.
    fn disk_full(&mut self) -> anyhow::Result<()> {
        // What is waiting now (a burst, a large capture) is not this
        // fault's to drop.
        self.wait_spool_drained(Duration::from_secs(180));
        self.faults.disk_full_phases += 1;
        self.garage.stop_garage()?;
        self.uploader.kill()?;
        self.uploader.start(Some(settings::DISK_FULL_BUDGET_MB))?;
        let used_mb = self.tmpfs.used().div_ceil(1024 * 1024);
        self.tmpfs
            .resize(used_mb + settings::DISK_FULL_HEADROOM_MB)?;
        self.traffic.set(5_000, 300);
        self.pause(15..25);
        if !self.launcher.is_running() {
            self.faults
                .problems
                .push("disk-full: the launcher died with the spool full".to_owned());
            self.launcher.start()?;
        }
        if !self.uploader.is_running() {
            self.faults
                .problems
                .push("disk-full: the uploader died with the spool full".to_owned());
        }
        self.restore_traffic();
        self.tmpfs.resize(settings::SPOOL_TMPFS_MB)?;
        self.garage.start_garage()?;
        if self.uploader.is_running() {
            self.uploader.kill()?;
        }
        self.uploader.start(None)
    }

    fn wait_spool_drained(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let waiting = std::fs::read_dir(self.spool.ready())
                .map(|d| d.count())
                .unwrap_or(0);
            if waiting == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// tcpdump SIGKILLed with the traffic paused (so that every datagram
    /// sent had reached it); the launcher hands over what tcpdump wrote
    /// and exits, and is started again.
    fn kill_tcpdump(&mut self) -> anyhow::Result<()> {
        self.traffic.pause();
        // libpcap hands packets over in blocks, up to a second late.
        std::thread::sleep(Duration::from_secs(2));
        let killed = self.launcher.kill_tcpdump();
        let started = self.launcher.start();
        self.traffic.resume();
        killed.and(started)
    }

    /// tcpdump SIGSTOPped past the stall limit: the launcher must say so,
    /// and say when it writes again.
    fn stop_tcpdump(&mut self) -> anyhow::Result<()> {
        let (stalls, again) = (
            self.launcher
                .log_count(spool::logging::counted::TCPDUMP_STALLED),
            self.launcher
                .log_count(spool::logging::counted::TCPDUMP_WRITING_AGAIN),
        );
        let stopped_at = std::time::SystemTime::now();
        self.launcher.signal_tcpdump(Signal::SIGSTOP)?;
        let stopped = settings::STALL_AFTER + Duration::from_millis(self.rng.u64(3_000..6_000));
        std::thread::sleep(stopped);
        // Until its ring is read empty again: as long again at the most.
        self.faults
            .stopped
            .push((stopped_at, std::time::SystemTime::now() + stopped));
        let reported = self
            .launcher
            .log_count(spool::logging::counted::TCPDUMP_STALLED)
            > stalls;
        self.launcher
            .signal_tcpdump(Signal::SIGCONT)
            .context("tcpdump vanished while stopped")?;
        if reported {
            self.faults.stalls_reported += 1;
        } else {
            self.faults.problems.push(format!(
                "tcpdump-stop: the launcher did not report a stall after {stopped:?}"
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self
            .launcher
            .log_count(spool::logging::counted::TCPDUMP_WRITING_AGAIN)
            == again
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        if self
            .launcher
            .log_count(spool::logging::counted::TCPDUMP_WRITING_AGAIN)
            > again
        {
            self.faults.stalls_noticed_again += 1;
        }
        Ok(())
    }

    /// A large capture sent through a per-connection limit it cannot pass
    /// within a minute: it must arrive, not be retried for ever.
    fn slow_link(&mut self) -> anyhow::Result<()> {
        let placed = self.place_synthetic(SLOW_LINK_BASE, 1, settings::SLOW_LINK_CAPTURE_BYTES)?;
        self.proxy
            .set_mode(Mode::Throttle(settings::SLOW_LINK_BYTES_PER_SECOND));
        let shipped = self.wait_shipped(&placed, Duration::from_secs(300));
        self.proxy.set_mode(Mode::Pass);
        if !shipped {
            self.faults.problems.push(format!(
                "slow-link: {} not uploaded within 300 s at {} KiB/s",
                placed.join(", "),
                settings::SLOW_LINK_BYTES_PER_SECOND / 1024
            ));
        }
        Ok(())
    }
}
