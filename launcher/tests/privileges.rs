//! The ownership scheme: whichever way tcpdump gets its privileges, the
//! uploader — another non-root uid sharing only the spool's group — can
//! read and delete every finished capture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use test_support::*;

const SPOOL_GID: u32 = 2000;
const CAPTURE_UID: &str = "1000";
const UPLOADER_UID: &str = "1001";

/// A spool like a pod's emptyDir with `fsGroup: 2000`: root-owned, group
/// 2000, setgid, group-writable.
fn shared_spool() -> Spool {
    let spool = Spool::new();
    nix::unistd::chown(
        spool.root(),
        None,
        Some(nix::unistd::Gid::from_raw(SPOOL_GID)),
    )
    .unwrap();
    std::fs::set_permissions(spool.root(), std::fs::Permissions::from_mode(0o2775)).unwrap();
    spool
}

fn as_user(uid: &str, program: &Path) -> Command {
    let mut cmd = Command::new("/usr/bin/setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg(format!("--groups={SPOOL_GID}"))
        .arg(program)
        .env("LAUNCHER_METRICS_ADDR", "127.0.0.1:0");
    cmd
}

fn capture_some(spool: &Spool, launcher: Command) {
    let port = free_port();
    capture_while(spool, launcher, "lo", port, &[], || {
        send_numbered(port, 0, 10, 100);
    });
}

/// Runs `launcher` on `interface` (filter: UDP to `port`, plus `extra`
/// tcpdump options), calls `send` once capture runs, then stops it.
fn capture_while(
    spool: &Spool,
    mut launcher: Command,
    interface: &str,
    port: u16,
    extra: &[&str],
    send: impl FnOnce(),
) {
    let mut child = launcher
        .args(["--spool-dir", spool.root().to_str().unwrap()])
        .args(["--interface", interface, "--rotate-seconds", "3600"])
        .args(["--filter", &format!("udp dst port {port}")])
        .arg("--")
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(10), "a file in active/", || {
        !Spool::files(&spool.active()).is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    send();
    std::thread::sleep(Duration::from_millis(1_500));
    signal(&child, Signal::SIGTERM);
    assert!(child.wait().unwrap().success());
}

fn assert_uploader_can_read_and_delete(spool: &Spool) {
    let ready = Spool::files(&spool.ready());
    assert_eq!(ready.len(), 1, "{ready:?}");
    let file = &ready[0];
    let meta = std::fs::metadata(file).unwrap();
    assert_eq!(meta.gid(), SPOOL_GID, "capture not in the spool group");
    assert_eq!(
        meta.mode() & 0o060,
        0o060,
        "capture not group read-write: {:o}",
        meta.mode()
    );
    assert_eq!(sequence_numbers(file), (0..10).collect::<Vec<_>>());

    let read = as_user(UPLOADER_UID, Path::new("/usr/bin/cat"))
        .arg(file)
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "uploader uid cannot read: {}",
        String::from_utf8_lossy(&read.stderr)
    );
    let delete = as_user(UPLOADER_UID, Path::new("/usr/bin/rm"))
        .arg(file)
        .output()
        .unwrap();
    assert!(
        delete.status.success(),
        "uploader uid cannot delete: {}",
        String::from_utf8_lossy(&delete.stderr)
    );
    assert!(!file.exists());
}

#[test]
fn root_launcher_captures_are_readable_and_deletable_by_the_uploader_uid() {
    if !can_capture("root_launcher_captures_are_readable_and_deletable_by_the_uploader_uid") {
        return;
    }
    let spool = shared_spool();
    let mut launcher = Command::new(env!("CARGO_BIN_EXE_launcher"));
    launcher.env("LAUNCHER_METRICS_ADDR", "127.0.0.1:0");
    capture_some(&spool, launcher);
    assert_uploader_can_read_and_delete(&spool);
}

/// A private copy of tcpdump with the file capabilities the image gives it
/// (`cap_net_raw+eip`, nothing else), and of the launcher, in a folder uid
/// 1000 can reach.
struct CaptureTools {
    dir: tempfile::TempDir,
}

impl CaptureTools {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let tcpdump = dir.path().join("tcpdump");
        std::fs::copy("/usr/bin/tcpdump", &tcpdump).unwrap();
        let setcap = Command::new("setcap")
            .arg("cap_net_raw+eip")
            .arg(&tcpdump)
            .status()
            .expect("setcap (libcap2-bin) is needed");
        assert!(setcap.success());
        std::fs::copy(env!("CARGO_BIN_EXE_launcher"), dir.path().join("launcher")).unwrap();
        CaptureTools { dir }
    }

    /// The launcher as the capture container runs it: uid 1000, group 2000,
    /// NET_RAW the only capability left in the bounding set (what
    /// `drop: [ALL]`, `add: [NET_RAW]` gives), no inheritable or ambient
    /// ones (what Kubernetes gives a non-root container), so tcpdump's file
    /// capabilities are its only source of privilege.
    fn launcher(&self, netns: Option<&str>) -> Command {
        self.launcher_with(netns, &self.dir.path().join("tcpdump"))
    }

    fn launcher_with(&self, netns: Option<&str>, tcpdump: &Path) -> Command {
        let mut cmd = match netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, "/usr/bin/setpriv"]);
                cmd
            }
            None => Command::new("/usr/bin/setpriv"),
        };
        cmd.arg(format!("--reuid={CAPTURE_UID}"))
            .arg(format!("--regid={SPOOL_GID}"))
            .arg("--clear-groups")
            .args(["--inh-caps=-all", "--ambient-caps=-all"])
            .arg("--bounding-set=-all,+net_raw")
            .arg(self.dir.path().join("launcher"))
            .arg("--tcpdump")
            .arg(tcpdump)
            // Any free port; a namespace's loopback may be down.
            .env("LAUNCHER_METRICS_ADDR", "0.0.0.0:0");
        cmd
    }
}

#[test]
fn non_root_launcher_captures_with_file_capabilities_on_tcpdump() {
    if !can_capture("non_root_launcher_captures_with_file_capabilities_on_tcpdump") {
        return;
    }
    let tools = CaptureTools::new();
    let spool = shared_spool();
    capture_some(&spool, tools.launcher(None));
    assert_uploader_can_read_and_delete(&spool);
}

/// In a pod the launcher cannot read tcpdump's descriptor table (its file
/// capabilities make it non-dumpable). Here every close event is lost as
/// well (an inotify queue of 0 events: each event becomes an overflow), so
/// the launcher looks at every file in `active/` each time: it must still
/// never hand over the file tcpdump is writing. A capture that grows once
/// in `ready/` was handed over live; every datagram must land once, in
/// whole files.
#[test]
fn with_close_events_lost_and_tcpdumps_descriptors_unreadable_the_live_file_is_never_handed_over() {
    let test = "with_close_events_lost_and_tcpdumps_descriptors_unreadable_the_live_file_is_never_handed_over";
    if !can_capture(test) {
        return;
    }
    let tools = CaptureTools::new();
    let spool = shared_spool();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("launcher.log");
    let port = free_port();
    let mut launcher = tools.launcher(None);
    launcher
        .args(["--spool-dir", spool.root().to_str().unwrap()])
        .args(["--interface", "lo", "--rotate-seconds", "1"])
        .args(["--filter", &format!("udp dst port {port}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = {
        let _lost = test_support::inotify::SmallInotifyQueue::lower_to(0).unwrap();
        let child = launcher.spawn().unwrap();
        assert!(
            test_support::inotify::wait_for_inotify_instance(child.id(), Duration::from_secs(10)),
            "the launcher made no inotify watch"
        );
        child
    };
    wait_until(Duration::from_secs(10), "a file in active/", || {
        !Spool::files(&spool.active()).is_empty()
    });

    // Watch ready/ while capture runs: the size each file had when first
    // seen there, and any growth after.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = std::thread::spawn({
        let (ready, stop) = (spool.ready(), stop.clone());
        move || {
            let mut first_seen = std::collections::HashMap::new();
            let mut grown = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for file in Spool::files(&ready) {
                    let Ok(size) = std::fs::metadata(&file).map(|m| m.len()) else {
                        continue;
                    };
                    let first = *first_seen.entry(file.clone()).or_insert(size);
                    if size != first && !grown.contains(&file) {
                        grown.push(file);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            grown
        }
    });
    send_numbered(port, 0, 6_000, 1_000);
    std::thread::sleep(Duration::from_millis(1_500));
    signal(&child, Signal::SIGTERM);
    assert!(child.wait().unwrap().success());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let grown = watcher.join().unwrap();

    let said = std::fs::read_to_string(&log).unwrap();
    let overflows = said.matches("lost track of closed files").count();
    assert!(
        overflows >= 3,
        "close events were not lost ({overflows}):\n{said}"
    );
    assert!(
        grown.is_empty(),
        "handed over while tcpdump wrote them: {grown:?}"
    );
    let files = Spool::files(&spool.ready());
    let seen = census(&files);
    assert_eq!(seen.len(), 6_000, "datagrams missing");
    assert!(seen.values().all(|&n| n == 1), "datagrams duplicated");
    for file in &files {
        assert_tcpdump_reads(file);
    }
}

/// Two network namespaces joined by a veth pair (an Ethernet device, where
/// promiscuous mode means something, unlike loopback), on TEST-NET-1
/// addresses; removed on drop.
struct VethPair {
    capture_ns: String,
    sender_ns: String,
}

const CAPTURE_IF: &str = "s3tdcap0";
const CAPTURE_ADDR: &str = "192.0.2.1";

impl VethPair {
    fn new() -> Option<Self> {
        let id = std::process::id();
        let pair = VethPair {
            capture_ns: format!("s3td-cap-{id}"),
            sender_ns: format!("s3td-send-{id}"),
        };
        let (cap, send) = (pair.capture_ns.as_str(), pair.sender_ns.as_str());
        let steps: [&[&str]; 8] = [
            &["netns", "add", cap],
            &["netns", "add", send],
            &[
                "link",
                "add",
                CAPTURE_IF,
                "netns",
                cap,
                "type",
                "veth",
                "peer",
                "name",
                "s3tdsend0",
                "netns",
                send,
            ],
            &["-n", cap, "addr", "add", "192.0.2.1/24", "dev", CAPTURE_IF],
            &[
                "-n",
                send,
                "addr",
                "add",
                "192.0.2.2/24",
                "dev",
                "s3tdsend0",
            ],
            &["-n", cap, "link", "set", CAPTURE_IF, "up"],
            &["-n", send, "link", "set", "s3tdsend0", "up"],
            &["-n", cap, "link", "set", "lo", "up"],
        ];
        for step in steps {
            match Command::new("ip").args(step).output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => panic!(
                    "ip {}: {}",
                    step.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(_) => return None,
            }
        }
        Some(pair)
    }

    /// The device's promiscuity count in the capture namespace.
    fn promiscuity(&self) -> u32 {
        let out = Command::new("ip")
            .args(["-n", &self.capture_ns, "-d", "link", "show", CAPTURE_IF])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .skip_while(|w| *w != "promiscuity")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no promiscuity in: {text}"))
    }

    /// Sends datagrams `0..count` from the other namespace to the capture
    /// side's address.
    fn send_numbered(&self, port: u16, count: u64) {
        for i in 0..count {
            let status = Command::new("ip")
                .args(["netns", "exec", &self.sender_ns, "bash", "-c"])
                .arg(format!(
                    "printf '%s' {} > /dev/udp/{CAPTURE_ADDR}/{port}",
                    String::from_utf8(numbered_payload(i)).unwrap()
                ))
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth pair with it.
        for ns in [&self.capture_ns, &self.sender_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The capture container gets `NET_RAW` and nothing else: tcpdump as uid
/// 1000, with `cap_net_raw` as its only file capability and NET_RAW the only
/// capability in the bounding set, captures on `any` and on a named Ethernet
/// device, in promiscuous mode (tcpdump's default, which it does set: the
/// device's promiscuity count rises) and with `-p`. NET_ADMIN is not needed.
#[test]
fn capture_needs_only_net_raw_on_any_and_a_named_interface_with_and_without_p() {
    const TEST: &str = "capture_needs_only_net_raw_on_any_and_a_named_interface_with_and_without_p";
    if !can_capture(TEST) {
        return;
    }
    let Some(veth) = VethPair::new() else {
        present_or_skip(
            TEST,
            Some("no `ip` command (apt-get install iproute2)".to_owned()),
        );
        return;
    };
    let tools = CaptureTools::new();
    // The control: the same user without the file capability cannot capture,
    // so what follows works through `cap_net_raw` and nothing else.
    let plain = tools.dir.path().join("tcpdump-plain");
    std::fs::copy("/usr/bin/tcpdump", &plain).unwrap();
    let spool = shared_spool();
    let out = tools
        .launcher_with(Some(&veth.capture_ns), &plain)
        .args(["--check", "--interface", CAPTURE_IF])
        .args(["--spool-dir", spool.root().to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("ermission"),
        "tcpdump without file capabilities opened the device: {said}"
    );
    for (interface, extra, promiscuous) in [
        (CAPTURE_IF, &[][..], true),
        (CAPTURE_IF, &["-p"][..], false),
        ("any", &[][..], false),
        ("any", &["-p"][..], false),
    ] {
        let what = format!("-i {interface} {}", extra.join(" "));
        let spool = shared_spool();
        let port = free_port();
        let mut promiscuity = None;
        capture_while(
            &spool,
            tools.launcher(Some(&veth.capture_ns)),
            interface,
            port,
            extra,
            || {
                promiscuity = Some(veth.promiscuity());
                veth.send_numbered(port, 10);
            },
        );
        let ready = Spool::files(&spool.ready());
        assert_eq!(ready.len(), 1, "{what}: {ready:?}");
        assert_eq!(
            sequence_numbers(&ready[0]),
            (0..10).collect::<Vec<_>>(),
            "{what}: not every datagram was captured"
        );
        // Only a named device is put in promiscuous mode (`any` cannot be).
        assert_eq!(
            promiscuity,
            Some(u32::from(promiscuous)),
            "{what}: promiscuity during capture"
        );
    }
}
