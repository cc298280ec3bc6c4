//! The node's credential endpoints never reach a capture (issue 20): their
//! plain-HTTP answers hold the node role's and every pod role's keys.
//!
//! Each test runs the launcher with its defaults (`-i any`) in a fresh
//! network namespace whose loopback holds the credential endpoints'
//! addresses and a control address. A server on each hands out a
//! credential-shaped answer naming its address; a client fetches each over
//! plain HTTP; then the captures are searched for the answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::Signal;
use test_support::*;

const LAUNCHER: &str = env!("CARGO_BIN_EXE_launcher");

/// Instance metadata, Pod Identity and ECS, as the launcher knows them.
const CREDENTIAL_V4: [&str; 3] = ["169.254.169.254", "169.254.170.23", "169.254.170.2"];
const CREDENTIAL_V6: [&str; 2] = ["fd00:ec2::254", "fd00:ec2::23"];
/// Addresses that are no credential endpoint (TEST-NET-1, documentation).
const CONTROL_V4: &str = "192.0.2.80";
const CONTROL_V6: &str = "2001:db8::80";

/// A network namespace with the endpoints' addresses on its loopback;
/// removed on drop.
struct EndpointNamespace {
    name: String,
    with_v6: bool,
}

impl EndpointNamespace {
    fn new(tag: &str) -> Self {
        let name = format!("s3td-cred-{tag}-{}", std::process::id());
        ip(&["netns", "add", &name]).unwrap();
        let mut namespace = EndpointNamespace {
            name,
            with_v6: false,
        };
        namespace.ip_in(&["link", "set", "lo", "up"]).unwrap();
        for address in CREDENTIAL_V4.iter().chain([&CONTROL_V4]) {
            namespace
                .ip_in(&["addr", "add", &format!("{address}/32"), "dev", "lo"])
                .unwrap();
        }
        namespace.with_v6 = CREDENTIAL_V6.iter().chain([&CONTROL_V6]).all(|address| {
            namespace
                .ip_in(&["addr", "add", &format!("{address}/128"), "dev", "lo"])
                .is_ok()
        });
        if !namespace.with_v6 {
            eprintln!("no IPv6 in the namespace: only IPv4 checked");
        }
        namespace
    }

    fn ip_in(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend(args);
        ip(&all)
    }

    fn credential_addresses(&self) -> Vec<IpAddr> {
        let v6: &[&str] = if self.with_v6 { &CREDENTIAL_V6 } else { &[] };
        CREDENTIAL_V4
            .iter()
            .chain(v6)
            .map(|a| a.parse().unwrap())
            .collect()
    }

    fn control_addresses(&self) -> Vec<IpAddr> {
        let mut addresses = vec![CONTROL_V4.parse().unwrap()];
        if self.with_v6 {
            addresses.push(CONTROL_V6.parse().unwrap());
        }
        addresses
    }

    /// The launcher with its defaults, inside the namespace, its log in
    /// the spool's root; returns once tcpdump writes into `active/`.
    fn start_launcher(&self, spool: &Spool, extra: &[&str]) -> std::process::Child {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, LAUNCHER])
            .args(["--spool-dir", spool.root().to_str().unwrap()])
            .args(extra)
            .env("RUST_LOG", "info")
            // Any free port; the namespace's loopback may be down.
            .env("LAUNCHER_METRICS_ADDR", "0.0.0.0:0")
            .stdout(Stdio::null())
            .stderr(File::create(spool.root().join("launcher.log")).unwrap())
            .spawn()
            .unwrap();
        wait_until(
            Duration::from_secs(10),
            "tcpdump to open a file in active/",
            || !Spool::files(&spool.active()).is_empty(),
        );
        std::thread::sleep(Duration::from_millis(500));
        child
    }

    /// Serves a credential-shaped answer on port 80 of each address and
    /// fetches it over plain HTTP, from inside the namespace.
    fn fetch_credentials_from(&self, addresses: &[IpAddr]) {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // Threads started from here on are in the namespace too.
                    setns(File::open(&path).unwrap(), CloneFlags::CLONE_NEWNET).unwrap();
                    for &address in addresses {
                        let listener = TcpListener::bind((address, 80)).unwrap();
                        let server = std::thread::spawn(move || serve_one(&listener, address));
                        let (status, body) = http_get(
                            SocketAddr::new(address, 80),
                            "/latest/meta-data/iam/security-credentials/node-role",
                        );
                        server.join().unwrap();
                        assert_eq!(status, 200, "no answer from {address}");
                        assert!(body.contains(&secret_of(address)), "{body}");
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
                .join()
                .unwrap();
        });
    }
}

impl Drop for EndpointNamespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The secret an address hands out: unique, so a capture shows whose
/// answer it holds.
fn secret_of(address: IpAddr) -> String {
    format!("s3td-secret-from-{address}")
}

/// Answers one request as the metadata service would, in plain HTTP.
fn serve_one(listener: &TcpListener, address: IpAddr) {
    let (mut stream, _) = listener.accept().unwrap();
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
        request.push(byte[0]);
    }
    let body = format!(
        r#"{{"Code":"Success","AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"{}","Token":"token"}}"#,
        secret_of(address)
    );
    write!(
        stream,
        "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
}

/// Runs the launcher (defaults plus `extra`) while every address hands out
/// its secret; returns the addresses whose secret is in a capture, and the
/// launcher's log.
fn secrets_captured(tag: &str, extra: &[&str]) -> (EndpointNamespace, Vec<IpAddr>, String) {
    let namespace = EndpointNamespace::new(tag);
    let spool = Spool::new();
    let mut launcher = namespace.start_launcher(&spool, extra);
    let mut every = namespace.credential_addresses();
    every.extend(namespace.control_addresses());
    namespace.fetch_credentials_from(&every);
    std::thread::sleep(Duration::from_millis(1_500));
    signal(&launcher, Signal::SIGTERM);
    assert!(launcher.wait().unwrap().success());

    let mut captured = Vec::new();
    for file in Spool::files(&spool.ready()) {
        captured.extend(std::fs::read(file).unwrap());
    }
    let found = every
        .into_iter()
        .filter(|&address| {
            let secret = secret_of(address).into_bytes();
            captured
                .windows(secret.len())
                .any(|w| w == secret.as_slice())
        })
        .collect();
    let log = std::fs::read_to_string(spool.root().join("launcher.log")).unwrap();
    (namespace, found, log)
}

#[test]
fn credential_endpoint_answers_are_never_captured_by_default() {
    let test = "credential_endpoint_answers_are_never_captured_by_default";
    if !can_capture(test) {
        return;
    }
    let (namespace, found, log) = secrets_captured("default", &[]);
    assert_eq!(
        found,
        namespace.control_addresses(),
        "captured secrets other than the control's:\n{log}"
    );
    for address in CREDENTIAL_V4.iter().chain(&CREDENTIAL_V6) {
        assert!(
            log.contains(address),
            "start-up log does not name {address}:\n{log}"
        );
    }
}

#[test]
fn a_filter_naming_the_credential_endpoints_cannot_capture_them() {
    let test = "a_filter_naming_the_credential_endpoints_cannot_capture_them";
    if !can_capture(test) {
        return;
    }
    let filter = "host 169.254.169.254 or host 169.254.170.23 or host 169.254.170.2 \
                  or ip6 host fd00:ec2::254 or ip6 host fd00:ec2::23 or tcp port 80";
    let (namespace, found, log) = secrets_captured("filter", &["--filter", filter]);
    assert_eq!(
        found,
        namespace.control_addresses(),
        "captured secrets other than the control's:\n{log}"
    );
}

#[test]
fn capture_credential_endpoints_captures_them_and_warns() {
    let test = "capture_credential_endpoints_captures_them_and_warns";
    if !can_capture(test) {
        return;
    }
    let (namespace, found, log) = secrets_captured("opt-in", &["--capture-credential-endpoints"]);
    let mut every = namespace.credential_addresses();
    every.extend(namespace.control_addresses());
    assert_eq!(found, every, "{log}");
    assert!(log.contains("DANGER"), "no warning at start:\n{log}");
}
