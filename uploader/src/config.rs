//! What the uploader will do: the command line resolved and validated before
//! anything starts.

use std::net::SocketAddr;
use std::time::Duration;

use spool::SpoolLayout;

use crate::bucket_owner;
use crate::cli::{Cli, SseArg, UploadMode};
use crate::errors::ConfigError;
use crate::keys::KeyTemplate;
use crate::retry::RetryPolicy;

const MIB: u64 = 1024 * 1024;
/// S3's smallest part (but the last).
pub const MIN_PART_MB: u64 = 5;
/// S3's largest number of parts.
pub const MAX_PARTS: u64 = 10_000;
/// Transient retries per file in `--once` mode.
const ONCE_RETRIES: usize = 5;
/// Transient retries in one turn of a capture while serving (about two
/// minutes with the default backoff); then it gives its lane to the next
/// capture and waits its deferral (`RetryPolicy::deferral`), so that a
/// capture that keeps failing never holds a lane for ever.
const TURN_RETRIES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Watch the spool until SIGTERM, then drain.
    Serve,
    /// Upload what is ready now, then exit.
    Once,
    /// Validate and probe, then exit.
    Check,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    Aes256,
    Kms { key_id: Option<String> },
}

#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// The account that must own the bucket (`bucket_owner.rs`).
    pub expected_bucket_owner: Option<String>,
    pub endpoint_url: Option<String>,
    pub force_path_style: bool,
    pub storage_class: Option<String>,
    pub sse: Option<Sse>,
    /// Whether the node's role (instance metadata) may supply credentials.
    pub allow_node_role: bool,
    /// Longest silence of one request (nothing sent, nothing received).
    pub read_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub spool: SpoolLayout,
    pub s3: S3Settings,
    pub key_template: KeyTemplate,
    pub concurrency: usize,
    /// Whether a flow index object is written for every capture.
    pub flow_index: bool,
    pub multipart_threshold: u64,
    pub part_size: u64,
    pub max_spool_bytes: u64,
    /// `all`, or `pinned` (the flight recorder: see `pins.rs`).
    pub upload_mode: UploadMode,
    /// How often the pins are listed in pinned mode.
    pub pin_poll_interval: Duration,
    pub metrics_addr: SocketAddr,
    pub drain_timeout: Duration,
    pub rescan_interval: Duration,
    pub retry: RetryPolicy,
}

impl Config {
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        let key_template = KeyTemplate::parse(&cli.key_template)?;
        if cli.part_size_mb < MIN_PART_MB {
            return Err(ConfigError::PartSizeTooSmall(cli.part_size_mb));
        }
        if cli.concurrency == 0 {
            return Err(ConfigError::Zero {
                flag: "concurrency",
            });
        }
        if cli.max_spool_mb == 0 {
            return Err(ConfigError::Zero {
                flag: "max-spool-mb",
            });
        }
        let sse = match (cli.sse, cli.sse_kms_key_id) {
            (None, None) => None,
            (Some(SseArg::Aes256), None) => Some(Sse::Aes256),
            (Some(SseArg::AwsKms), key_id) => Some(Sse::Kms { key_id }),
            (_, Some(_)) => return Err(ConfigError::KmsKeyWithoutKms),
        };
        let expected_bucket_owner = cli
            .expected_bucket_owner
            .filter(|o| !o.is_empty())
            .map(|o| bucket_owner::parse(&o))
            .transpose()?;
        if cli.upload_mode.ships_ring_indexes() && !cli.flow_index {
            return Err(ConfigError::RingIndexWithoutIndex);
        }
        let mode = if cli.check {
            Mode::Check
        } else if cli.once {
            Mode::Once
        } else {
            Mode::Serve
        };
        Ok(Self {
            mode,
            spool: SpoolLayout::new(cli.spool_dir),
            s3: S3Settings {
                bucket: cli.bucket,
                expected_bucket_owner,
                endpoint_url: cli.endpoint_url.filter(|u| !u.is_empty()),
                force_path_style: cli.force_path_style,
                storage_class: cli.storage_class.filter(|s| !s.is_empty()),
                sse,
                allow_node_role: cli.allow_node_role,
                read_timeout: Duration::from_millis(cli.read_timeout_ms.max(100)),
            },
            key_template,
            concurrency: cli.concurrency,
            flow_index: cli.flow_index,
            multipart_threshold: cli.multipart_threshold_mb.saturating_mul(MIB),
            part_size: cli.part_size_mb.saturating_mul(MIB),
            max_spool_bytes: cli.max_spool_mb.saturating_mul(MIB),
            upload_mode: cli.upload_mode,
            pin_poll_interval: Duration::from_secs(cli.pin_poll_seconds.max(1)),
            metrics_addr: cli.metrics_addr,
            drain_timeout: Duration::from_secs(cli.drain_timeout_seconds),
            rescan_interval: Duration::from_millis(cli.rescan_ms.max(10)),
            retry: RetryPolicy {
                min_delay: Duration::from_millis(200.min(cli.retry_max_ms)),
                max_delay: Duration::from_millis(cli.retry_max_ms),
                permanent_delay: Duration::from_millis(cli.permanent_retry_ms),
                max_transient_retries: Some(if mode == Mode::Once {
                    ONCE_RETRIES
                } else {
                    TURN_RETRIES
                }),
                give_up_after_a_turn: mode == Mode::Once,
            },
        })
    }

    /// Whether a file of this size goes up in parts.
    pub fn is_multipart(&self, size: u64) -> bool {
        size > self.multipart_threshold
    }

    /// The part size for a file: the configured one, raised if the file
    /// would otherwise need more than S3's 10,000 parts.
    pub fn part_size_for(&self, size: u64) -> u64 {
        let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        self.part_size.max(needed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut full = vec!["uploader", "--bucket", "b"];
        full.extend_from_slice(args);
        Config::from_cli(Cli::try_parse_from(full).unwrap())
    }

    #[test]
    fn part_size_below_s3_minimum_is_refused() {
        let err = parse(&["--part-size-mb", "4"]).unwrap_err();
        assert!(err.to_string().contains("5 MB"), "{err}");
        assert!(parse(&["--part-size-mb", "5"]).is_ok());
    }

    #[test]
    fn huge_files_get_larger_parts() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.part_size_for(100 * MIB), 16 * MIB);
        let huge = 500 * 1024 * MIB;
        assert!(huge.div_ceil(c.part_size_for(huge)) <= MAX_PARTS);
    }

    #[test]
    fn expected_bucket_owner_is_an_account_id_or_unset() {
        let owner = |args: &[&str]| parse(args).map(|c| c.s3.expected_bucket_owner);
        assert_eq!(owner(&[]).unwrap(), None);
        assert_eq!(
            owner(&["--expected-bucket-owner", ""]).unwrap(),
            None,
            "an empty variable is unset"
        );
        assert_eq!(
            owner(&["--expected-bucket-owner", "111122223333"]).unwrap(),
            Some("111122223333".to_owned())
        );
        let err = owner(&["--expected-bucket-owner", "my-account"]).unwrap_err();
        assert!(err.to_string().contains("12-digit"), "{err}");
    }

    #[test]
    fn kms_key_needs_kms() {
        assert!(parse(&["--sse-kms-key-id", "k"]).is_err());
        assert!(parse(&["--sse", "aws:kms", "--sse-kms-key-id", "k"]).is_ok());
        assert!(parse(&["--sse", "AES256"]).is_ok());
    }
}
