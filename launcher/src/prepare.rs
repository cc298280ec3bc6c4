//! Getting the spool ready for tcpdump and the uploader.
//!
//! Ownership scheme: the spool root's group is the group both containers
//! share (the pod's `fsGroup`). The three folders are created mode 2775
//! (setgid, so every file inherits that group) and tcpdump runs with umask
//! 002, so its files are 0664: the uploader, another uid in the same group,
//! can read them and delete them from `ready/`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sys::stat::{Mode, umask};
use nix::unistd::{AccessFlags, Uid, User, access, chown};
use spool::SpoolLayout;

use crate::errors::LaunchError;

/// Debian's tcpdump drops from root to this user after opening the device.
const TCPDUMP_DROP_USER: &str = "tcpdump";

/// Checks, without changing anything, that the spool root is a folder this
/// user can write and, when tcpdump will drop to its own user, that user
/// can reach it too.
pub fn check_spool(spool: &SpoolLayout) -> Result<(), LaunchError> {
    let root = spool.root();
    match fs::metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LaunchError::SpoolMissing(root.to_path_buf()));
        }
        Err(source) => {
            return Err(LaunchError::SpoolIo {
                path: root.to_path_buf(),
                source,
            });
        }
        Ok(m) if !m.is_dir() => return Err(LaunchError::SpoolNotFolder(root.to_path_buf())),
        Ok(_) => {}
    }
    if access(root, AccessFlags::W_OK | AccessFlags::X_OK).is_err() {
        return Err(LaunchError::SpoolNotWritable {
            path: root.to_path_buf(),
            uid: Uid::effective().as_raw(),
        });
    }
    if let Some(user) = tcpdump_drop_user() {
        check_reachable_by(&user, root)?;
    }
    Ok(())
}

/// Creates `active/`, `ready/` and `state/` in a spool that
/// [`check_spool`] accepted, and sets the umask tcpdump inherits.
pub fn prepare_spool(spool: &SpoolLayout) -> Result<(), LaunchError> {
    // Files tcpdump creates are 0664, so the uploader's group may read them.
    umask(Mode::from_bits_truncate(0o002));
    spool.create_folders()?;
    if let Some(user) = tcpdump_drop_user() {
        let active = spool.active();
        chown(&active, Some(user.uid), None).map_err(|errno| LaunchError::SpoolIo {
            path: active.clone(),
            source: errno.into(),
        })?;
    }
    Ok(())
}

/// The user tcpdump will write its files as, when that is not this one.
fn tcpdump_drop_user() -> Option<User> {
    if Uid::effective().is_root() {
        User::from_name(TCPDUMP_DROP_USER).ok().flatten()
    } else {
        None
    }
}

/// tcpdump, started as root, drops to `user` before it creates its first
/// file: the spool root and every folder above it must let that user
/// through, or tcpdump fails with a bare "Permission denied".
fn check_reachable_by(user: &User, spool_root: &Path) -> Result<(), LaunchError> {
    let groups = nix::unistd::getgrouplist(
        &std::ffi::CString::new(user.name.as_str()).unwrap_or_default(),
        user.gid,
    )
    .unwrap_or_else(|_| vec![user.gid]);
    for folder in spool_root.ancestors() {
        let Ok(metadata) = fs::metadata(folder) else {
            continue;
        };
        let mode = metadata.mode();
        let passes = if metadata.uid() == user.uid.as_raw() {
            mode & 0o100 != 0
        } else if groups.iter().any(|g| g.as_raw() == metadata.gid()) {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !passes {
            return Err(LaunchError::SpoolUnreachable {
                path: folder.to_path_buf(),
                user: user.name.clone(),
                mode: mode & 0o7777,
            });
        }
    }
    Ok(())
}
