//! How often failures are retried: the backoff schedule ([`RetryPolicy`]).
//! What is retried fast is a separate rule, [`FailureKind::is_transient`]
//! in `failure.rs`.

use std::time::Duration;

use backon::ExponentialBuilder;

// `upload.rs` still names these by their old home; kept until its
// in-flight changes are merged, then it imports `failure` directly.
pub use crate::failure::{FailureKind, classify};

/// The backoff schedule. Separate from the rule of what to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// First delay of the exponential backoff for transient failures.
    pub min_delay: Duration,
    /// Cap of the exponential backoff.
    pub max_delay: Duration,
    /// Delay between attempts while a failure is permanent.
    pub permanent_delay: Duration,
    /// `None` retries transient failures forever; `Some(n)` gives up after n
    /// retries (`--once`).
    pub max_transient_retries: Option<usize>,
}

impl RetryPolicy {
    pub fn backoff(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter();
        match self.max_transient_retries {
            Some(n) => builder.with_max_times(n),
            None => builder.without_max_times(),
        }
    }
}
