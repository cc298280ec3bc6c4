//! The ownership scheme: whichever way tcpdump gets its privileges, the
//! uploader — another non-root uid sharing only the spool's group — can
//! read and delete every finished capture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

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
        .arg(program);
    cmd
}

fn capture_some(spool: &Spool, launcher: Command) {
    let port = free_port();
    let mut launcher = launcher;
    let mut child = launcher
        .args(["--spool-dir", spool.root().to_str().unwrap()])
        .args(["--interface", "lo", "--rotate-seconds", "3600"])
        .args(["--filter", &format!("udp dst port {port}")])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), "a file in active/", || {
        !Spool::files(&spool.active()).is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    send_numbered(port, 0, 10, 100);
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
    capture_some(&spool, Command::new(env!("CARGO_BIN_EXE_launcher")));
    assert_uploader_can_read_and_delete(&spool);
}

#[test]
fn non_root_launcher_captures_with_file_capabilities_on_tcpdump() {
    if !can_capture("non_root_launcher_captures_with_file_capabilities_on_tcpdump") {
        return;
    }
    // A private copy of tcpdump carrying the capabilities the image gives it.
    let tools = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tools.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tcpdump = tools.path().join("tcpdump");
    std::fs::copy("/usr/bin/tcpdump", &tcpdump).unwrap();
    let setcap = Command::new("setcap")
        .args(["cap_net_raw,cap_net_admin+eip"])
        .arg(&tcpdump)
        .status()
        .expect("setcap (libcap2-bin) is needed");
    assert!(setcap.success());
    let launcher_copy = tools.path().join("launcher");
    std::fs::copy(env!("CARGO_BIN_EXE_launcher"), &launcher_copy).unwrap();

    let spool = shared_spool();
    let mut launcher = as_user(CAPTURE_UID, &launcher_copy);
    launcher.args(["--tcpdump", tcpdump.to_str().unwrap()]);
    capture_some(&spool, launcher);
    assert_uploader_can_read_and_delete(&spool);
}
