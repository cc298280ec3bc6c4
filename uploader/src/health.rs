//! Readiness: whether uploads work, as `/readyz` and the upload workers
//! see it. A latch set by a passing probe or upload and cleared by a
//! permanent failure; each change is logged once.

use std::sync::{Mutex, PoisonError};

use crate::failure::{FailureKind, UploadError};

/// What `/readyz` says before the first probe has answered.
const STARTING: &str = "starting";

/// Where a current problem was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Probe,
    Upload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing has answered yet: not ready, and nothing to log.
    NotProbed,
    Ready,
    /// A permanent failure, logged when it was seen.
    Failing {
        source: Source,
        kind: FailureKind,
    },
}

#[derive(Debug)]
pub struct Health {
    bucket: String,
    state: Mutex<State>,
}

impl Health {
    /// Starts not ready: the probe has not run yet.
    pub fn new(bucket: &str) -> Self {
        Self {
            bucket: bucket.to_owned(),
            state: Mutex::new(State::NotProbed),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Something that needs a person went wrong; logged when it differs
    /// from the problem already known.
    pub fn failed(&self, source: Source, key: &str, error: &UploadError) {
        let mut state = self.state();
        let known = matches!(*state, State::Failing { kind, .. } if kind == error.kind);
        if !known {
            tracing::error!(
                bucket = %self.bucket,
                key,
                kind = %error.kind,
                error = %error.detail,
                hint = crate::failure::hint(error.kind),
                "uploads are failing; captures are kept and retried slowly"
            );
        }
        *state = State::Failing {
            source,
            kind: error.kind,
        };
    }

    /// It works (again). A probe success does not clear a problem seen by
    /// an upload: the probe key may be allowed where capture keys are not.
    pub fn succeeded(&self, source: Source) {
        let mut state = self.state();
        match *state {
            State::Failing {
                source: Source::Upload,
                ..
            } if source == Source::Probe => {}
            State::Failing { .. } => {
                tracing::info!(bucket = %self.bucket, "uploads work again");
                *state = State::Ready;
            }
            State::NotProbed => *state = State::Ready,
            State::Ready => {}
        }
    }

    pub fn is_ready(&self) -> bool {
        *self.state() == State::Ready
    }

    /// Why not ready, in words safe to show anyone who reaches the port:
    /// the failure's kind, as in the metrics' `kind` label.
    pub fn reason(&self) -> Option<&'static str> {
        match *self.state() {
            State::NotProbed => Some(STARTING),
            State::Ready => None,
            State::Failing { kind, .. } => Some(kind.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_and_starting_until_something_answers() {
        let health = Health::new("b");
        assert!(!health.is_ready());
        assert_eq!(health.reason(), Some("starting"));
        health.succeeded(Source::Probe);
        assert!(health.is_ready());
        assert_eq!(health.reason(), None);
    }

    #[test]
    fn a_probe_success_does_not_clear_an_upload_problem() {
        let health = Health::new("b");
        let denied = UploadError::new(FailureKind::AccessDenied, "AccessDenied");
        health.failed(Source::Upload, "k", &denied);
        assert_eq!(health.reason(), Some("access_denied"));
        health.succeeded(Source::Probe);
        assert!(!health.is_ready());
        health.succeeded(Source::Upload);
        assert!(health.is_ready());
    }
}
