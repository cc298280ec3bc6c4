//! Bad input gets a clear message naming the problem, a non-zero exit, and
//! leaves every capture already in the spool untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;
use test_support::{Spool, can_capture};

fn launcher() -> Command {
    let mut cmd = Command::cargo_bin("launcher").unwrap();
    cmd.env("NO_COLOR", "1")
        .env_remove("TCPDUMP_ARGS")
        .env_remove("S3_ENDPOINT_URL")
        .env_remove("CAPTURE_CREDENTIAL_ENDPOINTS")
        .env_remove("CAPTURE_MODE")
        .env_remove("STATS_INTERVAL_MS");
    cmd
}

/// A spool with one finished and one unfinished capture in it.
fn spool_with_captures() -> Spool {
    let spool = Spool::new();
    for folder in [spool.active(), spool.ready()] {
        std::fs::create_dir(&folder).unwrap();
    }
    std::fs::write(spool.ready().join("20261127T140000Z.pcap"), b"finished").unwrap();
    std::fs::write(spool.active().join("20261127T140100Z.pcap"), b"unfinished").unwrap();
    spool
}

fn assert_untouched(spool: &Spool) {
    assert_eq!(
        std::fs::read(spool.ready().join("20261127T140000Z.pcap")).unwrap(),
        b"finished"
    );
    assert_eq!(
        std::fs::read(spool.active().join("20261127T140100Z.pcap")).unwrap(),
        b"unfinished"
    );
}

fn refuse(spool: &Spool, args: &[&str], says: &[&str]) {
    let mut assert = launcher()
        .arg("--spool-dir")
        .arg(spool.root())
        .args(args)
        .assert()
        .failure();
    for text in says {
        assert = assert.stderr(contains(*text));
    }
    assert_untouched(spool);
}

#[test]
fn refuses_an_s3_endpoint_url_whose_port_it_cannot_tell() {
    let spool = spool_with_captures();
    refuse(
        &spool,
        &["--s3-endpoint-url", "ftp://garage.local"],
        &[
            "S3_ENDPOINT_URL",
            "\"ftp://garage.local\"",
            "http://127.0.0.1:3900",
        ],
    );
}

#[test]
fn refuses_buffered_mode_without_counters_to_watch() {
    let spool = spool_with_captures();
    for interval in ["0", "60000"] {
        refuse(
            &spool,
            &[
                "--capture-mode",
                "buffered",
                "--stats-interval-ms",
                interval,
            ],
            &[
                "--capture-mode buffered needs --stats-interval-ms",
                &format!("(got {interval})"),
                "STATS_INTERVAL_MS=5000, or CAPTURE_MODE=per-packet",
            ],
        );
    }
}

#[test]
fn per_packet_mode_asks_tcpdump_for_each_packet_written_and_buffered_does_not() {
    if !can_capture("per_packet_mode_asks_tcpdump_for_each_packet_written_and_buffered_does_not") {
        return;
    }
    let spool = spool_with_captures();
    let root = spool.root().to_str().unwrap().to_owned();
    let command_line = |mode: &str| {
        let out = launcher()
            .args(["--spool-dir", &root, "--interface", "lo", "--check"])
            .args(["--capture-mode", mode, "--stats-interval-ms", "0"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(
        command_line("per-packet").contains(" -U -w "),
        "{}",
        command_line("per-packet")
    );
    // Buffered with no counters is refused; with them, no -U.
    assert_eq!(command_line("buffered"), "");
    let buffered = launcher()
        .args(["--spool-dir", &root, "--interface", "lo", "--check"])
        .args(["--capture-mode", "buffered"])
        .output()
        .unwrap();
    let buffered = String::from_utf8(buffered.stdout).unwrap();
    assert!(
        buffered.contains(" -w ") && !buffered.contains("-U"),
        "{buffered}"
    );
    assert_untouched(&spool);
}

#[test]
fn max_file_mb_zero_runs_tcpdump_without_a_size_limit() {
    if !can_capture("max_file_mb_zero_runs_tcpdump_without_a_size_limit") {
        return;
    }
    let spool = spool_with_captures();
    let root = spool.root().to_str().unwrap().to_owned();
    let command_line = |mb: &str| {
        let out = launcher()
            .args(["--spool-dir", &root, "--interface", "lo", "--check"])
            .args(["--max-file-mb", mb])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(command_line("7").contains(" -G 60 -C 7 "));
    let unlimited = command_line("0");
    assert!(
        unlimited.contains(" -G 60 ") && !unlimited.contains("-C"),
        "{unlimited}"
    );
    assert_untouched(&spool);
}

#[test]
fn refuses_zero_rotation() {
    let spool = spool_with_captures();
    refuse(
        &spool,
        &["--rotate-seconds", "0"],
        &["--rotate-seconds must be at least 1"],
    );
}

#[test]
fn refuses_glued_z_option_naming_it() {
    let spool = spool_with_captures();
    refuse(
        &spool,
        &["--", "-nz/evil.sh"],
        &["option -z is refused", "runs a command"],
    );
}

#[test]
fn refuses_file_options_naming_the_owning_flag() {
    let spool = spool_with_captures();
    refuse(
        &spool,
        &["--", "-w", "/tmp/x"],
        &["-w is refused", "--spool-dir"],
    );
    refuse(
        &spool,
        &["--", "-G", "5"],
        &["-G is refused", "--rotate-seconds"],
    );
    refuse(&spool, &["--", "-C5"], &["-C is refused", "--max-file-mb"]);
    refuse(
        &spool,
        &["--", "-F", "f.txt"],
        &["-F is refused", "--filter"],
    );
    refuse(&spool, &["--", "-r", "in.pcap"], &["-r is refused"]);
    refuse(&spool, &["--", "-V", "list"], &["-V is refused"]);
    refuse(&spool, &["--", "-W", "2"], &["-W is refused"]);
    refuse(
        &spool,
        &["--interface", "lo", "--", "-i", "eth0"],
        &["-i conflicts", "--interface"],
    );
}

#[test]
fn refuses_identity_change_in_the_environment_too() {
    let spool = spool_with_captures();
    let assert = launcher()
        .arg("--spool-dir")
        .arg(spool.root())
        .env("TCPDUMP_ARGS", "-n --relinquish-privileges=root")
        .assert()
        .failure();
    assert.stderr(contains("--relinquish-privileges is refused").and(contains("securityContext")));
    assert_untouched(&spool);
}

#[test]
fn refuses_missing_tcpdump() {
    let spool = spool_with_captures();
    refuse(
        &spool,
        &["--tcpdump", "/nonexistent/tcpdump"],
        &["tcpdump not found", "/nonexistent/tcpdump", "TCPDUMP_PATH"],
    );
}

#[test]
fn refuses_tcpdump_that_is_not_executable() {
    let spool = spool_with_captures();
    let fake = spool.root().join("tcpdump-copy");
    std::fs::write(&fake, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o644)).unwrap();
    refuse(
        &spool,
        &["--tcpdump", fake.to_str().unwrap()],
        &["is not an executable file"],
    );
}

#[test]
fn refuses_missing_spool() {
    launcher()
        .args(["--spool-dir", "/nonexistent/spool", "--check"])
        .assert()
        .failure()
        .stderr(contains("spool folder /nonexistent/spool does not exist"));
}

#[test]
fn refuses_spool_that_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spool");
    std::fs::write(&file, b"").unwrap();
    launcher()
        .arg("--spool-dir")
        .arg(&file)
        .assert()
        .failure()
        .stderr(contains("is not a folder"));
}

#[test]
fn refuses_spool_it_cannot_write() {
    if !nix::unistd::Uid::effective().is_root() {
        // As an ordinary user, a root-owned folder is the unwritable case.
        launcher()
            .args(["--spool-dir", "/", "--check"])
            .assert()
            .failure()
            .stderr(contains("is not writable"));
        return;
    }
    // As root every folder is writable: run the launcher as nobody.
    let spool = spool_with_captures();
    if !Path::new("/usr/bin/setpriv").exists() {
        panic!("setpriv (util-linux) is needed to run as another user");
    }
    let output = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_launcher"))
        .arg("--spool-dir")
        .arg(spool.root())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not writable by uid 65534"), "{stderr}");
    assert_untouched(&spool);
}

#[test]
fn refuses_unknown_interface_in_tcpdumps_words() {
    if !can_capture("refuses_unknown_interface_in_tcpdumps_words") {
        return;
    }
    let spool = spool_with_captures();
    refuse(
        &spool,
        &["--interface", "nosuch0"],
        &[
            "tcpdump refused the capture settings",
            "nosuch0",
            "No such device",
        ],
    );
}

#[test]
fn refuses_filter_that_does_not_compile_in_tcpdumps_words() {
    if !can_capture("refuses_filter_that_does_not_compile_in_tcpdumps_words") {
        return;
    }
    let spool = spool_with_captures();
    refuse(
        &spool,
        &["--interface", "lo", "--filter", "port 99999"],
        &[
            "tcpdump refused the capture settings",
            "illegal port number 99999",
        ],
    );
}

#[test]
fn check_prints_the_exact_command_without_capturing() {
    if !can_capture("check_prints_the_exact_command_without_capturing") {
        return;
    }
    let spool = spool_with_captures();
    let root = spool.root().to_str().unwrap().to_owned();
    launcher()
        .args(["--spool-dir", &root, "--interface", "lo", "--snaplen", "128", "--check"])
        .args(["--filter", "port 53", "--", "-n", "--nano"])
        .assert()
        .success()
        .stdout(predicate::eq(format!(
            "/usr/bin/tcpdump -i lo -s 128 -n --nano -w '{root}/active/%Y%m%dT%H%M%SZ.pcap' -G 60 -C 100 -- '((port 53) and not ({}) and not ({})) or ({})'\n",
            launcher::filter::credential_endpoints_filter(),
            spool::upload_connection_filter(launcher::filter::DEFAULT_S3_PORT),
            spool::tick::TICK_FILTER
        )));
    assert_untouched(&spool);
}

#[test]
fn refuses_spool_the_tcpdump_user_cannot_reach_when_run_as_root() {
    if !can_capture("refuses_spool_the_tcpdump_user_cannot_reach_when_run_as_root") {
        return;
    }
    let closed = tempfile::tempdir().unwrap();
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let spool = closed.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    launcher()
        .arg("--spool-dir")
        .arg(&spool)
        .args(["--interface", "lo"])
        .assert()
        .failure()
        .stderr(contains("does not let the \"tcpdump\" user through").and(contains("chmod o+x")));
    assert!(
        std::fs::read_dir(&spool).unwrap().next().is_none(),
        "the refused start changed the spool"
    );
}

#[test]
fn wrong_settings_exit_with_code_2() {
    let spool = spool_with_captures();
    for args in [&["--rotate-seconds", "0"][..], &["--", "-w", "/tmp/x"]] {
        launcher()
            .arg("--spool-dir")
            .arg(spool.root())
            .args(args)
            .assert()
            .code(2)
            .stderr(contains("invalid capture settings"));
    }
    launcher()
        .arg("--spool-dir")
        .arg(spool.root())
        .env("TCPDUMP_ARGS", "-n 'unclosed")
        .assert()
        .code(2);
    assert_untouched(&spool);
}

#[test]
fn an_unusable_spool_exits_with_code_1() {
    launcher()
        .args(["--spool-dir", "/nonexistent/spool", "--check"])
        .assert()
        .code(1)
        .stderr(contains("capture failed").and(contains("does not exist")));
}
