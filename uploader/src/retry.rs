//! What to do after a failure: one decision, [`RetryPolicy::decide`], from
//! the kind of failure, how many attempts of this turn failed, and how many
//! turns of this capture failed. What is transient is a separate rule,
//! [`FailureKind::is_transient`] in `failure.rs`; the jittered exponential
//! schedule comes from backon.
//!
//! A *turn* is one worker's go at one capture: hash, upload, verify,
//! delete. Within a turn, transient failures are retried fast (a body the
//! store saw corrupted is hashed again first: the file on disk is the
//! truth); a turn that cannot finish gives its lane up, so that a capture
//! that keeps failing never holds a worker while others wait.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};

use crate::failure::FailureKind;

/// The retry schedule and when a turn ends.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// First delay of the exponential backoff for transient failures.
    pub min_delay: Duration,
    /// Cap of the exponential backoff.
    pub max_delay: Duration,
    /// First delay before a capture whose turn failed gets its next turn.
    pub permanent_delay: Duration,
    /// `None` retries transient failures forever; `Some(n)` ends a turn
    /// after n failed attempts.
    pub max_transient_retries: Option<usize>,
    /// `--once`: a capture whose turn failed is given up on for this run
    /// (it stays in `ready/`), not deferred.
    pub give_up_after_a_turn: bool,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try the same step again after this delay.
    RetryAfter(Duration),
    /// The store saw other bytes than were hashed: hash the capture again,
    /// then send it again.
    Rehash,
    /// End this turn: the capture goes to the back of the queue and waits
    /// this long before its next turn (a person may be needed meanwhile:
    /// credentials, bucket, permissions).
    Defer(Duration),
    /// End this turn and give up on the capture for this run (`--once`).
    GiveUp,
    /// The capture left `ready/` (dropped by the budget or by hand):
    /// nothing left to do.
    Forget,
}

/// The longest deferral, in multiples of the slow delay.
const MAX_DEFERRAL_FACTOR: u32 = 8;

impl RetryPolicy {
    /// `kind` made attempt number `attempt` (1 for the first failure) of
    /// turn number `turn` (1 for the first) fail.
    pub fn decide(&self, kind: FailureKind, attempt: u32, turn: u32) -> Decision {
        if kind == FailureKind::Gone {
            return Decision::Forget;
        }
        let within_fast_retries = self
            .max_transient_retries
            .is_none_or(|n| usize::try_from(attempt).is_ok_and(|a| a <= n));
        match kind {
            FailureKind::ChecksumMismatch if within_fast_retries => Decision::Rehash,
            _ if kind.is_transient() && within_fast_retries => {
                Decision::RetryAfter(self.retry_delay(attempt))
            }
            _ if self.give_up_after_a_turn => Decision::GiveUp,
            _ => Decision::Defer(self.deferral(turn)),
        }
    }

    /// The jittered exponential delay before retry number `attempt`:
    /// between the min delay doubled `attempt - 1` times (at most the max
    /// delay) and twice that.
    fn retry_delay(&self, attempt: u32) -> Duration {
        let steps = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(steps)
            .unwrap_or(self.max_delay)
    }

    /// How long a capture whose turn number `turn` failed waits before its
    /// next one: the slow delay, doubled per failed turn in a row, at most
    /// [`MAX_DEFERRAL_FACTOR`] times it (60 s, 2, 4, then 8 min by default).
    fn deferral(&self, turn: u32) -> Duration {
        let factor = 2u32
            .saturating_pow(turn.saturating_sub(1))
            .min(MAX_DEFERRAL_FACTOR);
        self.permanent_delay.saturating_mul(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            permanent_delay: Duration::from_secs(60),
            max_transient_retries: Some(8),
            give_up_after_a_turn: false,
        }
    }

    fn retry_delay(decision: Decision) -> Duration {
        match decision {
            Decision::RetryAfter(delay) => delay,
            other => panic!("expected a fast retry, got {other:?}"),
        }
    }

    #[test]
    fn a_transient_failure_is_retried_after_a_jittered_delay_that_doubles() {
        let policy = policy();
        for (attempt, base_ms) in [(1, 200), (2, 400), (3, 800), (8, 25_600)] {
            let delay = retry_delay(policy.decide(FailureKind::Timeout, attempt, 1));
            let base = Duration::from_millis(base_ms);
            assert!(
                delay >= base && delay < base * 2,
                "attempt {attempt}: {delay:?} not in [{base:?}, {:?})",
                base * 2
            );
        }
    }

    #[test]
    fn the_retry_delay_never_exceeds_twice_the_cap() {
        let policy = RetryPolicy {
            max_transient_retries: None,
            ..policy()
        };
        let delay = retry_delay(policy.decide(FailureKind::Server, 40, 1));
        assert!(
            delay >= policy.max_delay && delay < policy.max_delay * 2,
            "{delay:?}"
        );
    }

    #[test]
    fn a_turn_ends_after_its_fast_retries_and_the_capture_waits_at_the_back_of_the_queue() {
        let policy = policy();
        assert!(matches!(
            policy.decide(FailureKind::Connection, 8, 1),
            Decision::RetryAfter(_)
        ));
        assert_eq!(
            policy.decide(FailureKind::Connection, 9, 1),
            Decision::Defer(Duration::from_secs(60))
        );
    }

    #[test]
    fn a_failure_a_person_must_fix_ends_the_turn_at_once() {
        let policy = policy();
        for kind in [
            FailureKind::AccessDenied,
            FailureKind::NoSuchBucket,
            FailureKind::InvalidCredentials,
            FailureKind::SignatureMismatch,
            FailureKind::Refused,
            FailureKind::LocalIo,
        ] {
            assert_eq!(
                policy.decide(kind, 1, 1),
                Decision::Defer(Duration::from_secs(60)),
                "{kind}"
            );
        }
    }

    #[test]
    fn a_body_the_store_saw_corrupted_is_hashed_again_within_the_fast_retries() {
        let policy = policy();
        assert_eq!(
            policy.decide(FailureKind::ChecksumMismatch, 1, 1),
            Decision::Rehash
        );
        assert_eq!(
            policy.decide(FailureKind::ChecksumMismatch, 8, 1),
            Decision::Rehash
        );
        assert_eq!(
            policy.decide(FailureKind::ChecksumMismatch, 9, 1),
            Decision::Defer(Duration::from_secs(60))
        );
    }

    #[test]
    fn deferral_doubles_per_failed_turn_up_to_a_cap() {
        let policy = policy();
        let minutes: Vec<u64> = (1..=6)
            .map(
                |turn| match policy.decide(FailureKind::AccessDenied, 1, turn) {
                    Decision::Defer(wait) => wait.as_secs() / 60,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert_eq!(minutes, [1, 2, 4, 8, 8, 8]);
    }

    #[test]
    fn with_once_a_failed_turn_gives_the_capture_up_for_this_run() {
        let policy = RetryPolicy {
            give_up_after_a_turn: true,
            ..policy()
        };
        assert_eq!(
            policy.decide(FailureKind::NoSuchBucket, 1, 1),
            Decision::GiveUp
        );
        assert_eq!(policy.decide(FailureKind::Timeout, 9, 1), Decision::GiveUp);
        assert!(matches!(
            policy.decide(FailureKind::Timeout, 1, 1),
            Decision::RetryAfter(_)
        ));
    }

    #[test]
    fn a_capture_that_left_ready_is_forgotten_not_retried_nor_reported() {
        let policy = RetryPolicy {
            give_up_after_a_turn: true,
            ..policy()
        };
        assert_eq!(policy.decide(FailureKind::Gone, 1, 1), Decision::Forget);
    }
}
