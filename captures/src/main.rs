//! The `captures` command line: a thin edge over the library.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use captures::archive::{self, Archive, Capture, Endpoint, FlowFilter, Selection};
use captures::explain::{Explainer, Scope};
use captures::identity::{Identities, Select};
use captures::merge::MergeInput;
use captures::untrusted::{self, escaped};
use captures::window::{Window, WindowLimits, rfc3339};
use chrono::{DateTime, TimeDelta, Utc};
use clap::{Args, Parser, Subcommand};
use flows::Symptom;
use std::collections::BTreeSet;

#[derive(Debug, Parser)]
#[command(version, about = "Find, fetch, merge and explain packet captures")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The captures overlapping a time window, and the gaps in each node's
    /// coverage.
    List {
        #[command(flatten)]
        bucket: BucketArgs,
        #[command(flatten)]
        who: IdentityArgs,
        /// Print JSON for scripts instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The flows of a window that involve a host (and port, symptom), and
    /// the captures that hold them, from the flow index alone.
    Find {
        #[command(flatten)]
        bucket: BucketArgs,
        #[command(flatten)]
        flows: FlowArgs,
        /// Print JSON for scripts instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Downloads the captures of a window (only those holding matching flows
    /// with --host/--port), each verified against its SHA-256, and/or merges
    /// them by time into one pcap cut to the window.
    Fetch {
        #[command(flatten)]
        bucket: BucketArgs,
        #[command(flatten)]
        flows: FlowArgs,
        /// Folder to download into (as <node>/<file>).
        #[arg(long, required_unless_present = "merge")]
        out: Option<PathBuf>,
        /// One pcap of every packet in the window, in time order.
        #[arg(long, value_name = "FILE.pcap")]
        merge: Option<PathBuf>,
        /// With --merge: write pcapng with a name-resolution block naming
        /// each address by the pod, Service or node that held it (from the
        /// identity journals), so that Wireshark and `tshark -N n` show
        /// pod names.
        #[arg(long, requires = "merge")]
        names: bool,
    },
    /// The symptoms of intermittent connectivity, worst first, with the time
    /// of each to jump to in Wireshark: in pcap files, or in the captures of
    /// a bucket selection (streamed, each verified against its SHA-256,
    /// nothing written to disk).
    Explain {
        /// pcap files (as written by tcpdump -w); or none, and a selection:
        /// --bucket, --from, --to, --node, --host, --port, --pod, as for
        /// fetch. With files and --bucket (or S3_BUCKET), the addresses are
        /// named from that bucket's identity journals.
        #[arg(required_unless_present = "from", conflicts_with = "from")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        bucket: BucketArgs,
        #[command(flatten)]
        flows: FlowArgs,
        /// Print JSON for scripts instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Pins a window for the flight recorder: uploaders in pinned mode
    /// (UPLOAD_MODE=pinned) ship the captures of the selected nodes that
    /// overlap it, tagged pinned=true.
    Pin(PinArgs),
    /// The pins in the bucket (or deletes one with --delete ID).
    Pins(PinsArgs),
    /// Serves Alertmanager's webhook: each firing alert becomes a pin
    /// around its start (see docs/flight-recorder.md).
    ReceiveAlerts(ReceiveArgs),
}

/// Where pins are kept: the bucket and the uploaders' static prefix.
#[derive(Debug, Args)]
struct PinStoreArgs {
    /// The bucket the uploaders write to.
    #[arg(long, env = "S3_BUCKET")]
    bucket: String,
    /// The uploaders' static prefix (their S3_KEY_TEMPLATE up to the first
    /// placeholder); pins go under <prefix>pins/.
    #[arg(long, value_name = "PREFIX", default_value = "tcp-dumps/")]
    prefix: String,
    /// S3-compatible endpoint (a local store); AWS S3 by default.
    #[arg(long, env = "S3_ENDPOINT_URL", value_name = "URL")]
    endpoint_url: Option<String>,
    #[arg(long, env = "S3_FORCE_PATH_STYLE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    force_path_style: bool,
}

#[derive(Debug, Args)]
struct PinArgs {
    #[command(flatten)]
    store: PinStoreArgs,
    /// Start of the window: RFC 3339, now, or relative (-10m).
    #[arg(long, allow_hyphen_values = true)]
    from: String,
    /// End of the window: RFC 3339, now, or relative (+5m, -1m).
    #[arg(long, allow_hyphen_values = true, default_value = "now")]
    to: String,
    /// A node whose captures to ship (repeat).
    #[arg(long = "node", value_name = "NODE", conflicts_with_all = ["all", "pod"])]
    nodes: Vec<String>,
    /// Every node.
    #[arg(long, conflicts_with = "pod")]
    all: bool,
    /// The nodes where this pod ran in the window, from the identity journal.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pod: Option<String>,
    /// Why the window matters (kept with the pin, and as the captures' tag).
    #[arg(long)]
    reason: String,
    /// How long uploaders honour the pin (at least until the window ends).
    #[arg(long, default_value = "7d")]
    ttl: String,
}

#[derive(Debug, Args)]
struct PinsArgs {
    #[command(flatten)]
    store: PinStoreArgs,
    /// Deletes the pin with this id instead (uploaders stop shipping for
    /// it; what was shipped stays).
    #[arg(long, value_name = "ID")]
    delete: Option<String>,
    /// Print JSON for scripts instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ReceiveArgs {
    #[command(flatten)]
    store: PinStoreArgs,
    /// Where to listen for Alertmanager.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:9095")]
    listen: std::net::SocketAddr,
    /// File holding the bearer token Alertmanager sends (its
    /// http_config.authorization.credentials_file holds the same).
    #[arg(long, env = "TOKEN_FILE", value_name = "FILE")]
    token_file: PathBuf,
    /// Pinned before an alert's startsAt.
    #[arg(long, env = "PIN_BEFORE", default_value = "10m")]
    before: String,
    /// Pinned after an alert's startsAt.
    #[arg(long, env = "PIN_AFTER", default_value = "5m")]
    after: String,
    /// How long uploaders honour an alert's pin.
    #[arg(long, env = "PIN_TTL", default_value = "7d")]
    ttl: String,
}

/// The bucket and window. `--bucket` and `--from` are checked when a
/// command reads the bucket (not by clap: `explain FILE…` shares these
/// arguments without needing them).
#[derive(Debug, Args)]
struct BucketArgs {
    /// The bucket the uploader writes to (required).
    #[arg(long, env = "S3_BUCKET")]
    bucket: Option<String>,
    /// Where the uploader writes: the fixed start of its key template (its
    /// S3_KEY_TEMPLATE up to the last `/` before the first placeholder).
    ///
    /// The layout is read from the record the uploader keeps there
    /// (`<prefix>.s3-tcpdump-layout.json`); without one,
    /// `<prefix>{node}/{yyyy}/{mm}/{dd}/{hh}/{file}`. Not given: the record
    /// under `tcp-dumps/`, else the one record at the bucket's top level or
    /// in one of its top-level folders, else the default layout.
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    /// The uploader's S3_KEY_TEMPLATE, for a bucket with no layout record
    /// (written by an uploader older than the record); its fixed start
    /// replaces --prefix. E.g. `traces/{cluster}/{node}/{yyyy}{mm}{dd}/{hh}-{file}`.
    #[arg(long, value_name = "TEMPLATE", conflicts_with = "prefix")]
    key_template: Option<String>,
    /// Start of the window: RFC 3339 or relative (-30m, -2h, now) (required).
    #[arg(long, allow_hyphen_values = true)]
    from: Option<String>,
    /// End of the window: RFC 3339 or relative.
    #[arg(long, allow_hyphen_values = true, default_value = "now")]
    to: String,
    /// Only these nodes (repeat); by default every node with a flow index.
    #[arg(long = "node", value_name = "NODE")]
    nodes: Vec<String>,
    /// The launcher's rotation (ROTATE_SECONDS), for captures that started
    /// before the window and those without a last-packet time (at most a
    /// day: it widens the hours listed).
    #[arg(long, env = "ROTATE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(0..=86_400))]
    rotate_seconds: u32,
    /// The longest window, in hours: each hour is one list request per
    /// node. The window's ends must also lie between 2000-01-01 and a day
    /// after now.
    #[arg(long, default_value_t = captures::window::DEFAULT_MAX_HOURS, value_name = "HOURS")]
    max_window_hours: u32,
    /// S3-compatible endpoint (a local store); AWS S3 by default.
    #[arg(long, env = "S3_ENDPOINT_URL", value_name = "URL")]
    endpoint_url: Option<String>,
    #[arg(long, env = "S3_FORCE_PATH_STYLE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    force_path_style: bool,
}

#[derive(Debug, Args)]
struct FlowArgs {
    /// An address either end of the flow has.
    #[arg(long)]
    host: Option<IpAddr>,
    /// A port either end of the flow uses.
    #[arg(long)]
    port: Option<u16>,
    /// Only flows with this symptom: reset, timeout, retransmission,
    /// zero-window, dns, icmp.
    #[arg(long, value_parser = parse_symptom)]
    symptom: Option<Symptom>,
    #[command(flatten)]
    who: IdentityArgs,
}

/// Selecting by identity, resolved through the identity journals to the
/// addresses the pods or Service held during the window, each over its
/// interval. At most one of the three.
#[derive(Debug, Args)]
struct IdentityArgs {
    /// Pods NAMESPACE/NAME, NAME a prefix (`payments/api-5f7c` finds
    /// `api-5f7c-xk2p9`).
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = Select::parse_pod, conflicts_with_all = ["selector", "service"])]
    pod: Option<Select>,
    /// Pods with these labels, `key=value[,key=value…]` (labels the journal
    /// keeps: its JOURNAL_LABELS allow-list).
    #[arg(long, value_name = "LABELS", value_parser = Select::parse_selector, conflicts_with = "service")]
    selector: Option<Select>,
    /// A Service NAMESPACE/NAME: its cluster IPs.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = Select::parse_service)]
    service: Option<Select>,
}

impl IdentityArgs {
    fn asked(&self) -> Option<&Select> {
        self.pod
            .as_ref()
            .or(self.selector.as_ref())
            .or(self.service.as_ref())
    }
}

fn parse_symptom(name: &str) -> Result<Symptom, String> {
    Symptom::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Symptom::ALL.iter().map(|s| s.name()).collect();
        format!("unknown symptom {name:?}; one of {}", names.join(", "))
    })
}

impl FlowArgs {
    fn filter(&self) -> FlowFilter {
        FlowFilter {
            host: self.host,
            port: self.port,
            symptom: self.symptom,
            identity: None,
        }
    }
}

fn main() -> ExitCode {
    // A merge keeps one file open per capture that overlaps in time with
    // others; the usual soft limit (1,024) is far below the usual hard one.
    // Best effort: where it cannot be raised, the merge says so itself.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                // Errors quote keys and the store's own messages.
                eprintln!("captures: {}", escaped(&format!("{e:#}")));
            }
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Explain {
            files,
            bucket,
            flows,
            json,
        } => explain_command(&files, bucket, &flows, json),
        Command::List { bucket, who, json } => runtime()?.block_on(list(bucket, &who, json)),
        Command::Find {
            bucket,
            flows,
            json,
        } => runtime()?.block_on(find(bucket, &flows, json)),
        Command::Fetch {
            bucket,
            flows,
            out,
            merge,
            names,
        } => runtime()?.block_on(fetch(bucket, &flows, out, merge.map(|m| (m, names)))),
        Command::Pin(args) => runtime()?.block_on(pin(args)),
        Command::Pins(args) => runtime()?.block_on(pins(args)),
        Command::ReceiveAlerts(args) => runtime()?.block_on(receive_alerts(args)),
    }
}

/// `explain`: files, or a bucket selection; the addresses named from the
/// bucket's journals when there is a bucket.
#[allow(clippy::print_stdout)]
fn explain_command(
    files: &[PathBuf],
    bucket: BucketArgs,
    flows: &FlowArgs,
    json: bool,
) -> anyhow::Result<()> {
    let (report, identities) = if files.is_empty() {
        runtime()?.block_on(explain_selection(bucket, flows))?
    } else {
        anyhow::ensure!(
            flows.filter().is_empty() && flows.who.asked().is_none(),
            "--host, --port, --symptom, --pod, --selector and --service select from the bucket; with files, explain reports every flow"
        );
        let report = captures::explain(files).context("explain")?;
        let identities = match bucket.bucket {
            Some(_) => runtime()?.block_on(identities_for_files(bucket, &report)),
            None => None,
        };
        (report, identities)
    };
    if json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(ids) = named(identities.as_ref()) {
            captures::identity::name_flows_json(&mut value, "flows", ids);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let namer = namer(identities.as_ref());
        print!("{}", captures::explain::render_text_named(&report, &namer));
    }
    Ok(())
}

async fn pin_client(store: &PinStoreArgs) -> anyhow::Result<aws_sdk_s3::Client> {
    let endpoint = Endpoint {
        url: store.endpoint_url.clone(),
        force_path_style: store.force_path_style,
    };
    Ok(archive::client(&endpoint).await?)
}

#[allow(clippy::print_stdout)]
async fn pin(args: PinArgs) -> anyhow::Result<()> {
    use bucket::pins::PinSelection;
    let now = chrono::Utc::now();
    let from = captures::pin::parse_moment(&args.from, now)?;
    let to = captures::pin::parse_moment(&args.to, now)?;
    let selection = match (&args.pod, args.all) {
        (Some(pod), _) => PinSelection::Nodes {
            nodes: nodes_where_pod_ran(&args.store, pod, from, to).await?,
            pod: Some(pod.clone()),
        },
        (None, true) => PinSelection::All,
        (None, false) if args.nodes.is_empty() => {
            anyhow::bail!("say which nodes: --node NODE (repeat), --pod NAMESPACE/NAME, or --all")
        }
        (None, false) => PinSelection::Nodes {
            nodes: args.nodes.clone(),
            pod: None,
        },
    };
    let created_by = std::env::var("USER").unwrap_or_else(|_| "captures".to_owned());
    let request = captures::pin::PinRequest {
        from,
        to,
        selection,
        reason: args.reason.clone(),
        created_by: created_by.clone(),
        ttl: captures::pin::parse_ttl(&args.ttl)?,
    };
    let seed = format!("{created_by}|{now}|{}", args.reason);
    let pin = request.into_pin(now, &seed)?;
    let client = pin_client(&args.store).await?;
    let key = captures::pin::write(&client, &args.store.bucket, &args.store.prefix, &pin).await?;
    println!(
        "pinned {} to {} ({}): s3://{}/{}",
        rfc3339(pin.from),
        rfc3339(pin.to),
        pin.id,
        escaped(&args.store.bucket),
        escaped(&key)
    );
    println!(
        "uploaders in pinned mode ship its captures within their poll interval (PIN_POLL_SECONDS)"
    );
    Ok(())
}

/// `pin --pod`: the nodes where the pod ran (or runs) during the pin's
/// window, from the identity journals. A window still to come is resolved
/// through the journal up to now: a pod still running is held on its node.
#[allow(clippy::print_stdout)]
async fn nodes_where_pod_ran(
    store: &PinStoreArgs,
    pod: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Vec<String>> {
    let asked = Select::parse_pod(pod).map_err(anyhow::Error::msg)?;
    let pinned = Window::new(from, to)?;
    let read_from = from.min(Utc::now() - TimeDelta::minutes(1));
    let archive = archive_over(
        BucketArgs {
            bucket: Some(store.bucket.clone()),
            prefix: Some(store.prefix.clone()),
            key_template: None,
            from: None,
            to: String::new(),
            nodes: Vec::new(),
            rotate_seconds: 60,
            max_window_hours: captures::window::DEFAULT_MAX_HOURS,
            endpoint_url: store.endpoint_url.clone(),
            force_path_style: store.force_path_style,
        },
        Window::new(read_from, to.max(read_from + TimeDelta::seconds(1)))?,
    )
    .await?;
    let spans = pods_ran(&archive, &asked, &pinned).await?;
    print_where_ran(&asked, &spans);
    let nodes: BTreeSet<String> = spans.into_iter().map(|s| s.node).collect();
    Ok(nodes.into_iter().collect())
}

#[allow(clippy::print_stdout)]
async fn pins(args: PinsArgs) -> anyhow::Result<()> {
    let client = pin_client(&args.store).await?;
    if let Some(id) = &args.delete {
        let key =
            captures::pin::delete(&client, &args.store.bucket, &args.store.prefix, id).await?;
        println!(
            "deleted s3://{}/{}",
            escaped(&args.store.bucket),
            escaped(&key)
        );
        return Ok(());
    }
    let listed = captures::pin::list(&client, &args.store.bucket, &args.store.prefix).await?;
    if args.json {
        let pins: Vec<_> = listed.iter().filter_map(|l| l.pin.as_ref().ok()).collect();
        println!("{}", serde_json::to_string_pretty(&pins)?);
        return Ok(());
    }
    let now = chrono::Utc::now();
    for l in &listed {
        match &l.pin {
            Ok(p) => {
                let nodes = match &p.selection {
                    bucket::pins::PinSelection::All => "all nodes".to_owned(),
                    bucket::pins::PinSelection::Nodes { nodes, .. } => nodes.join(","),
                };
                let state = if p.is_expired(now) {
                    "expired"
                } else {
                    "in force"
                };
                println!(
                    "{}  {} .. {}  {}  {}  by {}  {}",
                    p.id,
                    rfc3339(p.from),
                    rfc3339(p.to),
                    escaped(&nodes),
                    state,
                    escaped(&p.created_by),
                    escaped(&p.reason)
                );
            }
            Err(why) => println!("{}  unreadable: {}", escaped(&l.key), escaped(why)),
        }
    }
    Ok(())
}

/// The identity journals of the archive's window, with what could not be
/// read named on stderr.
async fn identities(archive: &Archive) -> anyhow::Result<Identities> {
    let identities = archive.identities().await?;
    #[allow(clippy::print_stderr)]
    {
        for refused in &identities.refused {
            eprintln!(
                "captures: skipped journal object {}: {}",
                refused.key.escape_debug(),
                refused.reason.escape_debug()
            );
        }
        if identities.dropped() > 0 {
            eprintln!(
                "captures: the identity journals of this window hold more than {} intervals; {} were not read, so some addresses may say unknown: narrow the window",
                captures::identity::MAX_INTERVALS,
                identities.dropped()
            );
        }
    }
    Ok(identities)
}

/// `explain FILE… --bucket B`: the journals of the bucket over the time of
/// the flows reported, to name their addresses; a failure to read them is
/// a warning (the report stands without names).
async fn identities_for_files(args: BucketArgs, report: &captures::Report) -> Option<Identities> {
    let first = report.flows.iter().map(|f| f.first).min()?;
    let last = report.flows.iter().map(|f| f.last).max()?;
    let window = Window::new(first, last.max(first + TimeDelta::microseconds(1))).ok()?;
    let read = async {
        let archive = archive_over(args, window).await?;
        identities(&archive).await
    };
    match read.await {
        Ok(identities) => Some(identities),
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "captures: addresses not named (the identity journals could not be read: {})",
                    escaped(&format!("{e:#}"))
                );
            }
            None
        }
    }
}

/// The journals, when there are any to name addresses with: with none at
/// all in the window (no journal container), addresses are printed bare
/// rather than each called unknown.
fn named(identities: Option<&Identities>) -> Option<&Identities> {
    identities.filter(|ids| !ids.is_empty())
}

/// Names an address for a flow's time, as text: `payments/api-5f7c-xk2p9`,
/// `unknown`, `ambiguous: … or …`.
fn namer(
    identities: Option<&Identities>,
) -> impl Fn(IpAddr, DateTime<Utc>, DateTime<Utc>) -> Option<String> + '_ {
    let identities = named(identities);
    move |ip, first, last| identities.map(|ids| ids.resolve(ip, first, last).to_string())
}

/// `--pod`, `--selector` or `--service` resolved to addresses over the
/// window, into the filter; refused naming what was looked for when the
/// journals hold nothing of it (or there are no journals).
fn with_identity(
    archive: &Archive,
    identities: &Identities,
    who: &IdentityArgs,
    mut filter: FlowFilter,
) -> anyhow::Result<FlowFilter> {
    let Some(asked) = who.asked() else {
        return Ok(filter);
    };
    let window = archive.selection().window;
    journals_answer(archive, identities, asked, &window)?;
    filter.identity = Some(std::sync::Arc::new(identities.select(asked, &window)?));
    Ok(filter)
}

/// Whether the journals can answer a selection over `window`: refused
/// when there are none (saying where they are looked for), or when one was
/// written by a newer journal (its intervals are missing from the answer).
fn journals_answer(
    archive: &Archive,
    identities: &Identities,
    asked: &Select,
    window: &Window,
) -> anyhow::Result<()> {
    if identities.is_empty() {
        return Err(captures::identity::IdentityError::NoJournal {
            asked: asked.to_string(),
            from: rfc3339(window.from),
            to: rfc3339(window.to),
            journal: archive.journal_location(),
        }
        .into());
    }
    if let Some(newer) = identities.refused.iter().find(|r| r.newer_schema) {
        anyhow::bail!(
            "{asked} cannot be resolved: journal object {} {}",
            newer.key,
            newer.reason
        );
    }
    Ok(())
}

async fn receive_alerts(args: ReceiveArgs) -> anyhow::Result<()> {
    use captures::receiver::{PinPolicy, Receiver};
    spool::logging::init();
    let token = std::fs::read(&args.token_file).with_context(|| {
        format!(
            "reading the bearer token from {} (--token-file): the receiver does not start without one",
            args.token_file.display()
        )
    })?;
    let token = token.trim_ascii().to_vec();
    anyhow::ensure!(
        token.len() >= 16,
        "the bearer token in {} is shorter than 16 bytes: write a long random one (e.g. openssl rand -hex 32)",
        args.token_file.display()
    );
    let policy = PinPolicy {
        before: captures::pin::parse_ttl(&args.before).context("--before")?,
        after: captures::pin::parse_ttl(&args.after).context("--after")?,
        ttl: captures::pin::parse_ttl(&args.ttl).context("--ttl")?,
    };
    let client = pin_client(&args.store).await?;
    let receiver = std::sync::Arc::new(Receiver {
        client,
        bucket: args.store.bucket.clone(),
        prefix: args.store.prefix.clone(),
        policy,
        token,
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(addr = %args.listen, route = captures::receiver::ROUTE, bucket = %args.store.bucket, "receiving Alertmanager's webhook");
    admin_http::serve(
        listener,
        captures::receiver::router(receiver),
        captures::receiver::LIMITS,
        prometheus_client::metrics::counter::Counter::default(),
    )
    .await;
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn archive(args: BucketArgs) -> anyhow::Result<Archive> {
    let from = args.from.as_deref().context(
        "--from is missing: the start of the window, RFC 3339 or relative (e.g. --from -30m)",
    )?;
    let window = Window::parse(
        from,
        &args.to,
        WindowLimits {
            max_hours: args.max_window_hours,
        },
    )?;
    archive_over(args, window).await
}

/// The bucket of `args` over `window`.
async fn archive_over(args: BucketArgs, window: Window) -> anyhow::Result<Archive> {
    let bucket = args
        .bucket
        .context("--bucket is missing: the bucket the captures are in (or set S3_BUCKET)")?;
    let endpoint = Endpoint {
        url: args.endpoint_url,
        force_path_style: args.force_path_style,
    };
    let client = archive::client(&endpoint).await?;
    Ok(Archive::with_recorded_layout(
        client,
        Selection {
            bucket,
            prefix: args.prefix,
            key_template: args.key_template,
            nodes: args.nodes,
            window,
            rotation: TimeDelta::seconds(i64::from(args.rotate_seconds)),
        },
    )
    .await?)
}

#[allow(clippy::print_stdout)]
async fn list(args: BucketArgs, who: &IdentityArgs, json: bool) -> anyhow::Result<()> {
    let archive = archive(args).await?;
    let mut listing = archive.list_captures().await?;
    if let Some(asked) = who.asked() {
        let ran = pods_ran(&archive, asked, &archive.selection().window).await?;
        keep_where_ran(&mut listing, &ran);
        anyhow::ensure!(
            !listing.captures.is_empty(),
            "{asked} ran on {}, but no capture of those nodes covers that time in this window",
            ran.iter()
                .map(|r| escaped(&r.node).to_string())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !json {
            print_where_ran(asked, &ran);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    for (node, captures) in archive::by_node(&listing.captures) {
        println!("{}:", escaped(node));
        for c in captures {
            println!(
                "  {}  {}  {:>8} packets  {:>12} bytes  {}{}{}",
                rfc3339(c.start),
                rfc3339(c.end),
                c.packets.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                c.size,
                escaped(&c.key),
                match c.pcap.as_deref() {
                    Some(damage) if damage != bucket::object_metadata::PCAP_OK =>
                        format!("  ({})", escaped(damage)),
                    _ => String::new(),
                },
                match (c.kernel_drops, c.interface_drops) {
                    (Some(kernel), Some(interface)) if kernel > 0 || interface > 0 => format!(
                        "  (dropped while captured: {kernel} by the kernel, {interface} by the interface)"
                    ),
                    _ => String::new(),
                }
            );
        }
    }
    print_drops_summary(&listing.captures);
    if !listing.gaps.is_empty() {
        println!("gaps (no capture covers these):");
        for g in &listing.gaps {
            println!(
                "  {}  {} .. {}",
                escaped(&g.node),
                rfc3339(g.from),
                rfc3339(g.to)
            );
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn find(args: BucketArgs, flows: &FlowArgs, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        !flows.filter().is_empty() || flows.who.asked().is_some(),
        "find needs --host, --port, --symptom, --pod, --selector or --service (to see every capture of the window, use list)"
    );
    let archive = archive(args).await?;
    let identities = identities(&archive).await?;
    let filter = with_identity(&archive, &identities, &flows.who, flows.filter())?;
    let found = archive.find_flows(&filter).await?;
    if json {
        print_found_json(&found, named(Some(&identities)))?;
        return refused_indexes(&found);
    }
    if found.flows.is_empty() {
        println!("no matching flows in the index for this window");
        return refused_indexes(&found);
    }
    let name = namer(Some(&identities));
    let end = |ip: IpAddr, port: u16, f: &flows::FlowRecord| match name(ip, f.first, f.last) {
        Some(n) => format!("{ip}:{port} ({n})"),
        None => format!("{ip}:{port}"),
    };
    for f in &found.flows {
        let symptoms: Vec<String> = Symptom::ALL
            .iter()
            .filter_map(|s| {
                let n = f.count(*s);
                (n > 0).then(|| format!("{} ×{}", s.name(), untrusted::count(n)))
            })
            .collect();
        println!(
            "{}  {} {} -> {}  {}+{} packets  {}  {}",
            rfc3339(f.first),
            escaped(&f.proto),
            end(f.src, f.sport, f),
            end(f.dst, f.dport, f),
            f.packets_src,
            f.packets_dst,
            if symptoms.is_empty() {
                "-".to_owned()
            } else {
                symptoms.join(", ")
            },
            escaped(&f.capture)
        );
    }
    refused_indexes(&found)
}

/// The names for `fetch --merge --names`, refused when there are none.
fn address_names(
    archive: &Archive,
    identities: &Identities,
) -> anyhow::Result<Vec<(IpAddr, String)>> {
    let window = archive.selection().window;
    let names = identities.names_over(&window);
    anyhow::ensure!(
        !names.is_empty(),
        "--names: no identity journal under {} names an address between {} and {}; merge without --names",
        archive.journal_location(),
        rfc3339(window.from),
        rfc3339(window.to)
    );
    Ok(names)
}

/// `find --json`: [`archive::Found`] with each flow's owners, written to
/// stdout as it is serialized (a window can hold millions of flows).
fn print_found_json(found: &archive::Found, identities: Option<&Identities>) -> anyhow::Result<()> {
    #[derive(serde::Serialize)]
    struct FoundJson<'a> {
        flows: captures::identity::NamedFlows<'a>,
        captures: &'a [String],
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        refused: &'a [archive::RefusedIndex],
    }
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(
        &mut out,
        &FoundJson {
            flows: captures::identity::NamedFlows {
                flows: &found.flows,
                identities,
            },
            captures: &found.captures,
            refused: &found.refused,
        },
    )?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Where and when the pods of a selection ran, from the journals.
async fn pods_ran(
    archive: &Archive,
    asked: &Select,
    window: &Window,
) -> anyhow::Result<Vec<captures::identity::NodeSpan>> {
    let identities = identities(archive).await?;
    journals_answer(archive, &identities, asked, window)?;
    Ok(identities.nodes_of(asked, window)?)
}

/// Whether the captures listed are complete: the packets dropped while
/// they were written, and how many captures carry no count (written
/// before the launcher counted drops, or after a crash).
#[allow(clippy::print_stdout)]
fn print_drops_summary(captures: &[Capture]) {
    let counted: Vec<&Capture> = captures
        .iter()
        .filter(|c| c.kernel_drops.is_some())
        .collect();
    if counted.is_empty() {
        return;
    }
    let sum = |f: fn(&Capture) -> Option<u64>| {
        counted
            .iter()
            .filter_map(|c| f(c))
            .fold(0u64, u64::saturating_add)
    };
    println!(
        "dropped while captured: {} by the kernel, {} by the interface (counted in {} of {} captures)",
        sum(|c| c.kernel_drops),
        sum(|c| c.interface_drops),
        counted.len(),
        captures.len()
    );
}

/// `<pod> ran on <node> from … to …`, one line per node and interval.
#[allow(clippy::print_stdout)]
fn print_where_ran(asked: &Select, ran: &[captures::identity::NodeSpan]) {
    for r in ran {
        println!(
            "{asked} ran on {} from {} to {}",
            escaped(&r.node),
            rfc3339(r.from),
            r.to.map_or_else(
                || "the last journal segment read (still there)".to_owned(),
                rfc3339
            )
        );
    }
}

/// `list --pod`: the captures of the nodes where the pods ran, while they
/// ran there, and the gaps of those nodes.
fn keep_where_ran(listing: &mut archive::Listing, ran: &[captures::identity::NodeSpan]) {
    let during = |node: &str, start, end| {
        ran.iter()
            .any(|r| r.node == node && r.from <= end && r.to.is_none_or(|to| to >= start))
    };
    listing.captures.retain(|c| during(&c.node, c.start, c.end));
    listing.gaps.retain(|g| during(&g.node, g.from, g.to));
}

/// Names each index object `find` refused on stderr; an error (exit 1)
/// when there was one, since the flows shown are then not all.
fn refused_indexes(found: &captures::archive::Found) -> anyhow::Result<()> {
    print_refused(found);
    anyhow::ensure!(
        found.refused.is_empty(),
        "{} index object(s) refused (named above); the flows shown are those of the others",
        found.refused.len()
    );
    Ok(())
}

fn print_refused(found: &captures::archive::Found) {
    for refused in &found.refused {
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "captures: skipped index object {}: {}",
                refused.key.escape_debug(),
                refused.reason.escape_debug()
            );
        }
    }
}

/// Explains the captures of a selection (only those holding matching flows
/// with --host/--port), streaming each from the bucket.
async fn explain_selection(
    args: BucketArgs,
    flows: &FlowArgs,
) -> anyhow::Result<(captures::Report, Option<Identities>)> {
    let archive = archive(args).await?;
    let identities = identities(&archive).await?;
    let filter = &with_identity(&archive, &identities, &flows.who, flows.filter())?;
    let captures = selected_captures(&archive, filter).await?;
    let progress = progress_bar(&captures)?;
    let mut explainer = Explainer::new(Scope {
        window: Some(archive.selection().window),
        filter: filter.clone(),
    });
    for capture in &captures {
        let mut reading = explainer.file(capture.key.clone());
        archive
            .stream(capture, &progress, |chunk| reading.feed(chunk))
            .await?;
        reading.finish()?;
    }
    progress.finish_and_clear();
    Ok((explainer.finish(), Some(identities)))
}

/// The captures of the window; with a flow filter, only those the index
/// says hold a matching flow.
async fn selected_captures(archive: &Archive, filter: &FlowFilter) -> anyhow::Result<Vec<Capture>> {
    let mut captures = match archive.list_captures().await {
        Ok(listing) => listing.captures,
        // A flight recorder's bucket may hold the window's flow indexes and
        // none of its captures: said below, by name.
        Err(archive::ArchiveError::EmptyWindow { .. }) if !filter.is_empty() => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    if !filter.is_empty() {
        let found = archive.find_flows(filter).await?;
        // Captures whose index was refused cannot be selected by flow.
        print_refused(&found);
        let holding = found.captures;
        let listed: BTreeSet<&str> = captures.iter().map(|c| c.key.as_str()).collect();
        let unlisted = holding
            .iter()
            .filter(|k| !listed.contains(k.as_str()))
            .cloned()
            .collect();
        let absent = archive.absent(unlisted).await?;
        captures.retain(|c| holding.contains(&c.key));
        if !absent.is_empty() {
            let why = never_shipped(&absent);
            anyhow::ensure!(
                !captures.is_empty(),
                "none of the captures holding matching flows is in the bucket: {why}"
            );
            #[allow(clippy::print_stderr)]
            {
                eprintln!("captures: warning: {why}");
            }
        }
        anyhow::ensure!(
            !captures.is_empty(),
            "no capture in this window holds a matching flow (see `captures find`)"
        );
    }
    Ok(captures)
}

/// What to say of captures whose flow index is in the bucket and which are
/// not: their keys (the first ten), and why that happens.
fn never_shipped(absent: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut keys: Vec<String> = absent
        .iter()
        .take(SHOWN)
        .map(|k| escaped(k).to_string())
        .collect();
    if absent.len() > SHOWN {
        keys.push(format!("and {} more", absent.len() - SHOWN));
    }
    format!(
        "{} capture(s) holding matching flows were never shipped (their node runs UPLOAD_MODE=pinned-with-index and no pin covered them; pin the window with `captures pin` while they are still on the node) or were removed by a lifecycle rule: {}",
        absent.len(),
        keys.join(", ")
    )
}

fn progress_bar(captures: &[Capture]) -> anyhow::Result<indicatif::ProgressBar> {
    let total: u64 = captures.iter().map(|c| c.size).sum();
    let progress = indicatif::ProgressBar::new(total);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .context("progress bar template")?,
    );
    Ok(progress)
}

#[allow(clippy::print_stdout)]
async fn fetch(
    args: BucketArgs,
    flows: &FlowArgs,
    out: Option<PathBuf>,
    merge: Option<(PathBuf, bool)>,
) -> anyhow::Result<()> {
    let archive = archive(args).await?;
    let names_wanted = merge.as_ref().is_some_and(|(_, names)| *names);
    let (filter, names) = if flows.who.asked().is_some() || names_wanted {
        let identities = identities(&archive).await?;
        let filter = with_identity(&archive, &identities, &flows.who, flows.filter())?;
        let names = if names_wanted {
            address_names(&archive, &identities)?
        } else {
            Vec::new()
        };
        (filter, names)
    } else {
        (flows.filter(), Vec::new())
    };
    let merge = merge.map(|(path, _)| path);
    let captures = selected_captures(&archive, &filter).await?;
    // Downloads go to --out, or to a temporary folder removed after a
    // merge that succeeded.
    let mut scratch = None;
    let dir = match &out {
        Some(dir) => dir.clone(),
        None => {
            let parent = merge
                .as_deref()
                .and_then(|m| m.parent())
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let folder = tempfile::Builder::new()
                .prefix("captures-downloads-")
                .tempdir_in(parent)
                .with_context(|| format!("creating a download folder in {}", parent.display()))?;
            scratch.insert(folder).path().to_owned()
        }
    };
    let progress = progress_bar(&captures)?;
    let paths = archive.fetch(&captures, &dir, &progress).await?;
    progress.finish_and_clear();
    if out.is_some() {
        for path in &paths {
            println!("{}", escaped(&path.display().to_string()));
        }
    }
    if let Some(merged) = merge {
        let window = archive.selection().window;
        let inputs: Vec<MergeInput> = paths
            .into_iter()
            .zip(&captures)
            .map(|(path, capture)| MergeInput {
                path,
                node: capture.node.clone(),
            })
            .collect();
        let result = tokio::task::spawn_blocking({
            let merged = merged.clone();
            move || captures::merge::merge_named(&inputs, &window, &merged, &names)
        })
        .await
        .context("merge task")?;
        let result = match result {
            Ok(result) => result,
            // The downloads were verified and may have taken long: keep
            // them for another merge (mergecap, or a narrower window).
            Err(e) => {
                let kept = match scratch.take() {
                    Some(scratch) => scratch.keep(),
                    None => dir,
                };
                return Err(anyhow::Error::new(e).context(format!(
                    "merging into {} failed; the {} verified downloads are kept in {}",
                    merged.display(),
                    captures.len(),
                    kept.display()
                )));
            }
        };
        #[allow(clippy::print_stderr)]
        for damaged in &result.damaged {
            eprintln!("captures: warning: {}", escaped(&damaged.to_string()));
        }
        println!(
            "{}: {} from {} captures",
            merged.display(),
            escaped(&result.to_string()),
            captures.len(),
        );
    }
    Ok(())
}
