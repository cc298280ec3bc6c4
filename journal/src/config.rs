//! What the user typed ([`Cli`]) and what the journal will do ([`Config`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::errors::ConfigError;
use crate::facts::LabelAllowList;
use crate::watch::Reconnect;

/// Records which pod or Service held each IP address on this node, and
/// when, into the spool beside the captures, one segment per rotation
/// period; the uploader ships the segments to the bucket.
#[derive(Debug, Parser)]
#[command(name = "journal", version)]
pub struct Cli {
    /// The spool folder shared with the uploader; segments go to its
    /// `journal/` folder.
    #[arg(long, env = "SPOOL_DIR", default_value = "/spool")]
    pub spool_dir: PathBuf,

    /// This node's name: only its pods are watched
    /// (`fieldSelector=spec.nodeName=<node>`). In a pod, from the downward
    /// API (`fieldRef: spec.nodeName`).
    #[arg(long = "node", env = "NODE_NAME", default_value = "")]
    pub node: String,

    /// Length of a segment in seconds: the capture's rotation, so that a
    /// capture and the journal of its time are about the same size of
    /// window. Segments start at multiples of it (UTC).
    #[arg(long, env = "ROTATE_SECONDS", default_value_t = 60)]
    pub rotate_seconds: u64,

    /// Pod labels kept in the journal, comma-separated. Others are never
    /// written (labels can hold anything).
    /// Example: `JOURNAL_LABELS=app,app.kubernetes.io/name,team`.
    #[arg(
        long,
        env = "JOURNAL_LABELS",
        value_delimiter = ',',
        default_value = "app,app.kubernetes.io/name,app.kubernetes.io/instance,app.kubernetes.io/component,k8s-app"
    )]
    pub labels: Vec<String>,

    /// Ended intervals a segment may hold; past it the segment is written
    /// at once and a new one begins (bounds memory under pod churn).
    #[arg(long, env = "JOURNAL_MAX_RECORDS", default_value_t = 10_000)]
    pub max_records: usize,

    /// Most megabytes of segments kept in the spool while the uploader
    /// cannot ship them; past it the oldest go first, each logged.
    #[arg(long, env = "JOURNAL_MAX_MB", default_value_t = 64)]
    pub max_mb: u64,

    /// Liveness probe: exit 0 if a segment was written within three
    /// periods (at least 30 s), else 1 naming what is wrong.
    #[arg(long)]
    pub probe: bool,
}

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub spool: spool::SpoolLayout,
    pub node: String,
    pub period: Duration,
    pub labels: LabelAllowList,
    pub max_records: usize,
    pub max_spool_bytes: u64,
    pub reconnect: Reconnect,
}

impl Config {
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        if cli.node.trim().is_empty() {
            return Err(ConfigError::NoNode);
        }
        if !(1..=86_400).contains(&cli.rotate_seconds) {
            return Err(ConfigError::Period(cli.rotate_seconds));
        }
        if cli.max_records == 0 {
            return Err(ConfigError::MaxRecords);
        }
        Ok(Self {
            spool: spool::SpoolLayout::new(cli.spool_dir),
            node: cli.node.trim().to_owned(),
            period: Duration::from_secs(cli.rotate_seconds),
            labels: LabelAllowList::new(cli.labels.into_iter().map(|l| l.trim().to_owned())),
            max_records: cli.max_records,
            max_spool_bytes: cli.max_mb.saturating_mul(1024 * 1024),
            reconnect: Reconnect::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_missing_node_name_is_refused_naming_the_downward_api() {
        let cli = Cli::parse_from(["journal", "--node", " "]);
        let err = Config::from_cli(cli).unwrap_err().to_string();
        assert!(
            err.contains("NODE_NAME") && err.contains("spec.nodeName"),
            "{err}"
        );
    }

    #[test]
    fn labels_are_a_comma_separated_allow_list() {
        let cli = Cli::parse_from(["journal", "--node", "n1", "--labels", "app, team"]);
        let config = Config::from_cli(cli).unwrap();
        assert_eq!(config.labels.names(), ["app", "team"]);
    }
}
