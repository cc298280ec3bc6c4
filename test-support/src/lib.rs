//! What the launcher's and the uploader's tests share, in one place: the
//! spool fixture and synthetic captures ([`fixtures`]), a real garage
//! ([`garage`], feature `garage`), free ports and waiting ([`net`],
//! [`wait`]), child processes ([`process`]), the numbered-datagram traffic
//! and its census ([`numbered`]), the launcher under test ([`capture`]),
//! the skip rule ([`prerequisites`]), the reference page's flag tables
//! ([`flag_table`]), two proxies ([`throttle`], [`s3_proxy`]) and real
//! failures on loopback for the flow index's tests ([`traffic`]) and
//! capture-like files for the benchmarks ([`synthetic`]), a small
//! inotify queue for one process ([`inotify`]), and generated captures
//! for the property tests of every pcap reader ([`generated`]). The `numbered`
//! binary offers the traffic, its census and those files to scripts. The
//! fault ledger ([`ledger`], feature `garage`, the `chaos` binary) runs the
//! whole pipeline under injected faults and counts what reached S3. A
//! fake Kubernetes API server ([`fake_apiserver`], feature
//! `fake-apiserver`) serves the journal's tests.
//!
//! The binaries under test are the test crates' own
//! (`env!("CARGO_BIN_EXE_…")`); functions that run one take its path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

pub mod capture;
#[cfg(feature = "fake-apiserver")]
pub mod fake_apiserver;
pub mod fixtures;
pub mod flag_table;
#[cfg(feature = "garage")]
pub mod garage;
pub mod generated;
pub mod inotify;
pub mod journal_fixture;
#[cfg(feature = "garage")]
pub mod ledger;
pub mod net;
pub mod numbered;
pub mod prerequisites;
pub mod process;
pub mod s3_proxy;
pub mod synthetic;
pub mod throttle;
pub mod traffic;
pub mod wait;

pub use capture::{launcher_log, start_capture, start_capture_logged};
pub use fixtures::{Spool, name_started_ago, pcap_bytes, sha256_hex};
#[cfg(feature = "garage")]
pub use garage::Garage;
pub use net::{free_port, http_get, http_post};
pub use numbered::{
    assert_tcpdump_reads, census, numbered_payload, read_sequence_numbers, send_numbered,
    send_numbered_padded, send_paced, sequence_numbers,
};
pub use prerequisites::{can_capture, present_or_skip};
pub use process::{Running, signal, uploader_with_unreachable_store};
pub use wait::wait_until;

use std::path::{Path, PathBuf};

/// The workspace's root folder (scripts, README).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}
