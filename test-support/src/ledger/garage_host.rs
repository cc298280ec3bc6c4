//! garage in a network namespace of its own, reached over a veth pair, so
//! that the link can be cut for real: packets vanish (an nftables drop
//! inside the namespace), connections time out instead of being refused.
//! Everything made here (namespace, link, garage) is undone on drop.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The nftables table that cuts the link (inside the namespace).
const CUT_TABLE: &str = "s3td_chaos_cut";

#[derive(Debug)]
pub struct GarageHost {
    namespace: String,
    host_link: String,
    ns_link: String,
    dir: PathBuf,
    script: PathBuf,
    garage_bin: PathBuf,
    pub addr: SocketAddr,
    rpc_port: u16,
    pub env: HashMap<String, String>,
    running: bool,
    cut: bool,
}

fn run(what: &str, cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(
        &format!("ip {}", args.join(" ")),
        Command::new("ip").args(args),
    )
}

impl GarageHost {
    /// Makes the namespace and the link, and starts garage in it with its
    /// data in `dir`.
    pub fn start(dir: &Path, repo: &Path, garage_bin: &Path) -> anyhow::Result<GarageHost> {
        let id = std::process::id();
        // /30 subnets in 10.213.0.0/16, one per run (by process id).
        let subnet = (id % 16_384) * 4;
        let octets = |last: u32| {
            Ipv4Addr::new(
                10,
                213,
                u8::try_from(subnet >> 8).unwrap_or(0),
                u8::try_from((subnet & 0xff) + last).unwrap_or(0),
            )
        };
        let (host_ip, ns_ip) = (octets(1), octets(2));
        let mut host = GarageHost {
            namespace: format!("s3td-chaos-{id}"),
            host_link: format!("s3tc{id}h"),
            ns_link: format!("s3tc{id}n"),
            dir: dir.to_owned(),
            script: repo.join("scripts/garage-local"),
            garage_bin: garage_bin.to_owned(),
            addr: SocketAddr::from((ns_ip, 3900)),
            rpc_port: 3901,
            env: HashMap::new(),
            running: false,
            cut: false,
        };
        let (ns, h, n) = (
            host.namespace.clone(),
            host.host_link.clone(),
            host.ns_link.clone(),
        );
        ip(&["netns", "add", &ns])?;
        ip(&[
            "link", "add", &h, "type", "veth", "peer", "name", &n, "netns", &ns,
        ])?;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &h])?;
        ip(&["link", "set", &h, "up"])?;
        ip(&["-n", &ns, "addr", "add", &format!("{ns_ip}/30"), "dev", &n])?;
        ip(&["-n", &ns, "link", "set", &n, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        host.start_garage()?;
        Ok(host)
    }

    /// Starts garage (again) inside the namespace, on the same data.
    pub fn start_garage(&mut self) -> anyhow::Result<()> {
        run(
            "garage-local start",
            Command::new("ip")
                .args(["netns", "exec", &self.namespace])
                .arg(&self.script)
                .arg("start")
                .arg(&self.dir)
                .arg(self.addr.port().to_string())
                .arg(self.rpc_port.to_string())
                .env("GARAGE_API_HOST", "0.0.0.0")
                .env("GARAGE_BIN", &self.garage_bin),
        )?;
        self.running = true;
        self.env = crate::garage::read_env_file(&self.dir)?;
        Ok(())
    }

    pub fn stop_garage(&mut self) -> anyhow::Result<()> {
        run(
            "garage-local stop",
            Command::new(&self.script).arg("stop").arg(&self.dir),
        )?;
        self.running = false;
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Drops every packet that arrives in the namespace over the link.
    pub fn cut_link(&mut self) -> anyhow::Result<()> {
        let script = format!(
            "add table inet {CUT_TABLE}\nadd chain inet {CUT_TABLE} input {{ type filter hook input priority 0; policy accept; }}\nadd rule inet {CUT_TABLE} input iifname \"{}\" drop\n",
            self.ns_link
        );
        let file = self.dir.join("cut.nft");
        std::fs::write(&file, script)?;
        run(
            "nft (cut the link)",
            Command::new("ip")
                .args(["netns", "exec", &self.namespace, "nft", "-f"])
                .arg(&file),
        )?;
        self.cut = true;
        Ok(())
    }

    pub fn restore_link(&mut self) -> anyhow::Result<()> {
        run(
            "nft (restore the link)",
            Command::new("ip").args([
                "netns",
                "exec",
                &self.namespace,
                "nft",
                "delete",
                "table",
                "inet",
                CUT_TABLE,
            ]),
        )?;
        self.cut = false;
        Ok(())
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn bucket(&self) -> &str {
        self.env.get("S3_BUCKET").map_or("captures", String::as_str)
    }

    pub fn access_key(&self) -> &str {
        self.env.get("AWS_ACCESS_KEY_ID").map_or("", String::as_str)
    }

    pub fn secret_key(&self) -> &str {
        self.env
            .get("AWS_SECRET_ACCESS_KEY")
            .map_or("", String::as_str)
    }
}

impl Drop for GarageHost {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop_garage();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .output();
    }
}
