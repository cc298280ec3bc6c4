//! The skip rule shared by the tests that need root, tcpdump or garage:
//! run by hand without them, a test prints why it skips; under `CI=true` a
//! missing prerequisite fails it instead.

use std::path::Path;

/// True when nothing is missing; otherwise prints the skip (or panics in CI).
pub fn present_or_skip(test: &str, missing: Option<String>) -> bool {
    let Some(reason) = missing else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {reason}, and CI=true forbids skipping");
    }
    eprintln!("SKIPPED {test}: {reason}");
    false
}

/// Root and the system tcpdump, for tests that capture real packets.
pub fn can_capture(test: &str) -> bool {
    let missing = if !nix::unistd::Uid::effective().is_root() {
        Some("capturing needs root".to_owned())
    } else if !Path::new("/usr/bin/tcpdump").is_file() && !Path::new("/usr/sbin/tcpdump").is_file()
    {
        Some("tcpdump is not installed (apt-get install tcpdump)".to_owned())
    } else {
        None
    };
    present_or_skip(test, missing)
}
