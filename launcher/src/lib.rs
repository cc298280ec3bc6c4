//! The capture side of s3-tcpdump: one long-running tcpdump with `-G`
//! rotation writes into `<spool>/active/`; every file tcpdump has closed is
//! made valid and renamed atomically into `<spool>/ready/` for the uploader.
//!
//! Stages: [`plan`] (flags → validated plan, with [`passthrough`] screening
//! the user's tcpdump options) → [`prepare`] (spool folders and ownership)
//! → [`handover`] of leftovers from a crashed run (with [`trim`]) →
//! [`supervise`] (tcpdump as a child until it exits, with the [`tick`],
//! the hand-over of each file as tcpdump [`closed`] it, the [`stall`] watch,
//! tcpdump's counters asked with SIGUSR1 ([`stats`]) and the capture-side
//! [`budget`]) → final hand-over. All along, [`metrics`] serves `/metrics`.

pub mod budget;
pub mod cli;
pub mod closed;
pub mod errors;
pub mod filter;
pub mod handover;
pub mod lifecycle;
pub mod lines;
pub mod metrics;
pub mod passthrough;
pub mod plan;
pub mod prepare;
pub mod stall;
pub mod stats;
pub mod supervise;
pub mod tick;
pub mod trim;

use std::process::ExitCode;

pub use errors::LaunchError;
pub use plan::Plan;

/// `--probe`: the liveness verdict from the spool's heartbeat, printed.
pub fn probe(spool_dir: &std::path::Path) -> ExitCode {
    let spool = spool::SpoolLayout::new(spool_dir);
    #[allow(clippy::print_stdout)]
    match stall::probe(&spool) {
        Ok(age) => {
            println!(
                "alive: tcpdump was last seen capturing {} s ago",
                age.as_secs()
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("{why}");
            ExitCode::FAILURE
        }
    }
}

/// Validates, recovers leftovers, then captures until tcpdump exits.
/// Returns the exit code: tcpdump's own, or 0 after `--check`.
pub async fn run(plan: Plan) -> Result<ExitCode, LaunchError> {
    // Everything is checked before anything is changed: a refused start
    // leaves the spool exactly as it was. tcpdump itself judges the
    // interface and the filter.
    prepare::check_spool(&plan.spool)?;
    supervise::preflight(&plan).await?;
    log_exclusions(&plan);
    if plan.check_only {
        println!("{}", plan.command_line());
        return Ok(ExitCode::SUCCESS);
    }
    let metrics = std::sync::Arc::new(metrics::Metrics::new());
    let server = metrics::bind(plan.metrics_addr, metrics.clone(), plan.spool.clone())
        .await
        .map_err(|source| LaunchError::MetricsBind {
            addr: plan.metrics_addr,
            source,
        })?;
    // Aborted when the launcher returns (the runtime is dropped).
    tokio::spawn(server);
    tracing::info!(addr = %plan.metrics_addr, "serving /metrics and /healthz");
    prepare::prepare_spool(&plan.spool)?;
    if !plan.ticks_reach_capture {
        tracing::warn!(
            interface = %plan.interface,
            "the launcher's tick travels on loopback and is not seen on this interface: files rotate only when a packet arrives, and a stalled tcpdump is not detected (capture on `any` for both)"
        );
    }
    match spool::counters::remove_orphans(&plan.spool.counters(), &plan.spool.ready()) {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "removed drop-count records whose capture is gone"),
        Err(e) => tracing::warn!(error = %e, "cannot sweep the drop-count records in counters/"),
    }
    log_capture_mode(&plan);
    let recovered = handover::hand_over_all(&plan.spool, &metrics, None)?;
    if !recovered.files.is_empty() {
        tracing::info!(
            files = recovered.files.len(),
            "handed over captures an earlier run left behind"
        );
    }
    let status = supervise::capture(&plan, metrics).await?;
    Ok(ExitCode::from(supervise::exit_code(status)))
}

/// Says at start how tcpdump writes, and what a SIGKILL of it can lose.
fn log_capture_mode(plan: &Plan) {
    use std::os::unix::fs::MetadataExt as _;
    match plan.capture_mode {
        cli::CaptureMode::PerPacket => tracing::info!(
            "capture mode per-packet: tcpdump writes each packet as it is captured (-U)"
        ),
        cli::CaptureMode::Buffered => {
            // glibc gives a FILE the st_blksize of its file as buffer.
            let block = std::fs::metadata(plan.spool.active()).map_or(0, |m| m.blksize());
            tracing::info!(
                buffer_bytes = block,
                "capture mode buffered: tcpdump writes its buffer when full and at each rotation; a SIGKILL of tcpdump loses at most the buffer and the record torn at its edge"
            );
        }
    }
}

/// Says at start what the filter leaves out, and shouts when the
/// credential endpoints are captured.
fn log_exclusions(plan: &Plan) {
    let endpoints = filter::CREDENTIAL_ENDPOINTS.join(", ");
    if plan.exclusions.credential_endpoints {
        tracing::info!(
            addresses = %endpoints,
            "leaving out the node's credential endpoints (instance metadata, EKS Pod Identity, ECS), both directions, whatever the filter"
        );
    } else {
        tracing::warn!(
            addresses = %endpoints,
            "DANGER: --capture-credential-endpoints (CAPTURE_CREDENTIAL_ENDPOINTS) is on: the captures will hold the node role's and every pod role's credentials in plain text, and anyone who can read the bucket can use them; turn it off unless you are debugging those services on a bucket no one else reads"
        );
    }
    match plan.exclusions.own_uploads_to_port {
        Some(port) => tracing::info!(
            port,
            "leaving out the uploader's own packets: TCP to the S3 port marked with DSCP 1"
        ),
        None => tracing::warn!(
            "--capture-own-uploads is on: each capture holds the upload of the one before"
        ),
    }
}
