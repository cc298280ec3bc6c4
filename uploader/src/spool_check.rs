//! Whether the spool can be used: checked (and its folders created) before
//! the uploader starts, and looked at by `--check`, which creates nothing.

use std::fs;

use spool::SpoolLayout;

use crate::errors::SpoolError;

/// Checks that the spool is usable and creates whichever of its folders is
/// missing: as a native sidecar the uploader usually starts before the
/// capture container, on an empty volume.
pub fn prepare(spool: &SpoolLayout) -> Result<(), SpoolError> {
    const FIX_MISSING: &str = "mount the shared spool volume there, or set --spool-dir/SPOOL_DIR";
    const FIX_ACCESS: &str = "run the uploader in the spool's group (fsGroup) and keep the folders group-writable (mode 2775)";
    let root = spool.root();
    match fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(SpoolError {
                path: root.to_owned(),
                problem: "is not a folder".into(),
                fix: FIX_MISSING,
            });
        }
        Err(e) => {
            return Err(SpoolError {
                path: root.to_owned(),
                problem: format!("cannot be used ({e})"),
                fix: FIX_MISSING,
            });
        }
    }
    spool.create_folders().map_err(|e| SpoolError {
        path: e.path,
        problem: format!("cannot be created or shared ({})", e.source),
        fix: FIX_ACCESS,
    })?;
    use nix::unistd::{AccessFlags, access};
    let rwx = AccessFlags::R_OK | AccessFlags::W_OK | AccessFlags::X_OK;
    for (folder, why) in [
        (spool.ready(), "captures could not be deleted after upload"),
        (spool.state(), "resume records could not be written"),
    ] {
        access(&folder, rwx).map_err(|e| SpoolError {
            path: folder.clone(),
            problem: format!("is not readable and writable by this user ({e}); {why}"),
            fix: FIX_ACCESS,
        })?;
    }
    Ok(())
}

/// Whether the spool folder exists (for `--check`; creates nothing). Its
/// subfolders may be missing: the uploader creates them at start.
pub fn spool_exists(spool: &SpoolLayout) -> bool {
    fs::metadata(spool.root()).is_ok_and(|m| m.is_dir())
}
