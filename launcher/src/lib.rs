//! The capture side of s3-tcpdump: one long-running tcpdump with `-G`
//! rotation writes into `<spool>/active/`; every file tcpdump has closed is
//! made valid and renamed atomically into `<spool>/ready/` for the uploader.
//!
//! Stages: [`plan`] (flags → validated plan, with [`passthrough`] screening
//! the user's tcpdump options) → [`prepare`] (spool folders and ownership)
//! → [`handover`] of leftovers from a crashed run (with [`trim`]) →
//! [`supervise`] (tcpdump as a child until it exits) → final hand-over.

pub mod cli;
pub mod errors;
pub mod handover;
pub mod passthrough;
pub mod plan;
pub mod prepare;
pub mod supervise;
pub mod trim;

use std::process::ExitCode;

pub use errors::LaunchError;
pub use plan::Plan;

/// Validates, recovers leftovers, then captures until tcpdump exits.
/// Returns the exit code: tcpdump's own, or 0 after `--check`.
pub async fn run(plan: Plan) -> Result<ExitCode, LaunchError> {
    // Everything is checked before anything is changed: a refused start
    // leaves the spool exactly as it was. tcpdump itself judges the
    // interface and the filter.
    prepare::check_spool(&plan.spool)?;
    supervise::preflight(&plan).await?;
    if plan.check_only {
        println!("{}", plan.command_line());
        return Ok(ExitCode::SUCCESS);
    }
    prepare::prepare_spool(&plan.spool)?;
    let recovered = handover::hand_over_closed(&plan.spool, handover::Closed::All)?;
    if !recovered.is_empty() {
        tracing::info!(
            files = recovered.len(),
            "handed over captures an earlier run left behind"
        );
    }
    let status = supervise::capture(&plan).await?;
    Ok(ExitCode::from(supervise::exit_code(status)))
}
