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
    /// `None` retries transient failures forever; `Some(n)` ends a
    /// capture's turn after n retries (then it gives its lane up, see
    /// [`RetryPolicy::deferral`]; with `--once` it is left behind).
    pub max_transient_retries: Option<usize>,
}

/// The longest deferral, in multiples of the slow delay.
const MAX_DEFERRAL_FACTOR: u32 = 8;

impl RetryPolicy {
    /// How long a capture whose turn failed waits before its next one: the
    /// slow delay, doubled per failed turn in a row, at most
    /// [`MAX_DEFERRAL_FACTOR`] times it (60 s, 2, 4, then 8 min by default).
    pub fn deferral(&self, failed_turns: u32) -> Duration {
        let factor = 2u32
            .saturating_pow(failed_turns.saturating_sub(1))
            .min(MAX_DEFERRAL_FACTOR);
        self.permanent_delay.saturating_mul(factor)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferral_doubles_per_failed_turn_up_to_a_cap() {
        let policy = RetryPolicy {
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            permanent_delay: Duration::from_secs(60),
            max_transient_retries: Some(8),
        };
        let minutes: Vec<u64> = (1..=6).map(|t| policy.deferral(t).as_secs() / 60).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 8, 8]);
    }
}
