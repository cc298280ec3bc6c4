//! tcpdump's lifetime as a state machine: Starting → Capturing → Stopping
//! (Draining → Terminated → Killed) → Exited.
//!
//! Each transition is a pure method: it takes the event (tcpdump said it
//! is listening, a stop was asked for, a deadline passed, tcpdump was
//! reaped) and the time, and returns the next state and the one
//! [`Effect`] the supervisor must carry out. [`crate::supervise`] drives it
//! from the same `select!` that receives signals, timers and closed files,
//! and asks it which of those branches are live.
//!
//! Besides the stop, tcpdump is signalled only SIGUSR1, which asks for its
//! counters and which it answers on stderr without touching the capture
//! file (see [`crate::stats`] for the lines of its source that show it):
//! `-U` writes each packet as it comes, from tcpdump's own loop.

use std::process::ExitStatus;
use std::time::Duration;

use tokio::time::Instant;

/// How long tcpdump keeps capturing after a stop request: longer than
/// libpcap's one-second block timeout, so every packet the kernel captured
/// before the request has been handed to tcpdump.
pub const BLOCK_DRAIN: Duration = Duration::from_millis(1_500);
/// How long tcpdump gets to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where tcpdump is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Spawned; tcpdump has not yet said it is listening, so its silence
    /// is not a stall (opening the interface takes a while).
    Starting,
    /// tcpdump is listening: ticks, hand-overs, the stall watch, the budget.
    Capturing,
    /// A stop was asked for.
    Stopping(Stopping),
    /// Reaped, with its status: every file may be handed over.
    Exited(ExitStatus),
}

/// How far stopping has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopping {
    /// tcpdump keeps running until `forward_at` so that what the kernel
    /// captured before the request reaches the file: libpcap hands packets
    /// over in blocks, up to a second late, and tcpdump drops whatever is
    /// still in the ring when it exits. Capturing goes on meanwhile;
    /// `listening` says whether tcpdump had said so (the stall watch
    /// counts only then).
    Draining {
        forward_at: Instant,
        listening: bool,
    },
    /// SIGTERM forwarded; SIGKILL at `kill_at`.
    Terminated { kill_at: Instant },
    /// SIGKILL sent; waiting to reap.
    Killed,
}

/// What the supervisor must do after a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Nothing,
    /// First stop request: say so; tcpdump keeps capturing for [`BLOCK_DRAIN`].
    Drain,
    /// Forward SIGTERM to tcpdump.
    Terminate,
    /// SIGKILL tcpdump, for the reason given.
    Kill(KillCause),
}

/// Why tcpdump is killed rather than left to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillCause {
    /// A second stop request: the user means now.
    SecondRequest,
    /// tcpdump did not exit within [`STOP_GRACE`] of SIGTERM.
    GraceExpired,
}

impl Lifecycle {
    /// tcpdump said it is listening (its signal handlers are installed).
    #[must_use]
    pub fn on_listening(self) -> Self {
        match self {
            Lifecycle::Starting => Lifecycle::Capturing,
            Lifecycle::Stopping(Stopping::Draining { forward_at, .. }) => {
                Lifecycle::Stopping(Stopping::Draining {
                    forward_at,
                    listening: true,
                })
            }
            other => other,
        }
    }

    /// SIGTERM or SIGINT reached the launcher. The first drains, then
    /// forwards; any later one kills at once.
    #[must_use]
    pub fn on_stop_request(self, now: Instant) -> (Self, Effect) {
        match self {
            Lifecycle::Starting | Lifecycle::Capturing => (
                Lifecycle::Stopping(Stopping::Draining {
                    forward_at: now + BLOCK_DRAIN,
                    listening: self == Lifecycle::Capturing,
                }),
                Effect::Drain,
            ),
            Lifecycle::Stopping(_) => (
                Lifecycle::Stopping(Stopping::Killed),
                Effect::Kill(KillCause::SecondRequest),
            ),
            Lifecycle::Exited(_) => (self, Effect::Nothing),
        }
    }

    /// The pending [`deadline`](Self::deadline) passed.
    #[must_use]
    pub fn on_deadline(self, now: Instant) -> (Self, Effect) {
        match self {
            Lifecycle::Stopping(Stopping::Draining { .. }) => (
                Lifecycle::Stopping(Stopping::Terminated {
                    kill_at: now + STOP_GRACE,
                }),
                Effect::Terminate,
            ),
            Lifecycle::Stopping(Stopping::Terminated { .. }) => (
                Lifecycle::Stopping(Stopping::Killed),
                Effect::Kill(KillCause::GraceExpired),
            ),
            other => (other, Effect::Nothing),
        }
    }

    /// tcpdump was reaped, whatever state it was in.
    #[must_use]
    pub fn on_exit(self, status: ExitStatus) -> Self {
        Lifecycle::Exited(status)
    }

    /// When the next timed transition is due, if one is pending.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Lifecycle::Stopping(Stopping::Draining { forward_at, .. }) => Some(*forward_at),
            Lifecycle::Stopping(Stopping::Terminated { kill_at }) => Some(*kill_at),
            _ => None,
        }
    }

    /// Whether tcpdump's "listening" is still awaited.
    pub fn awaits_listening(&self) -> bool {
        matches!(
            self,
            Lifecycle::Starting
                | Lifecycle::Stopping(Stopping::Draining {
                    listening: false,
                    ..
                })
        )
    }

    /// Whether the once-a-second work runs (tick, stall watch, budget,
    /// held files): until SIGTERM is forwarded.
    pub fn ticks(&self) -> bool {
        matches!(
            self,
            Lifecycle::Starting
                | Lifecycle::Capturing
                | Lifecycle::Stopping(Stopping::Draining { .. })
        )
    }

    /// Whether tcpdump's silence counts as a stall: once it listens, and
    /// while it goes on capturing.
    pub fn watches_for_stalls(&self) -> bool {
        matches!(
            self,
            Lifecycle::Capturing
                | Lifecycle::Stopping(Stopping::Draining {
                    listening: true,
                    ..
                })
        )
    }

    /// Whether tcpdump may be asked for its counters (SIGUSR1): only once
    /// it said it is listening, since its handler is installed by then and
    /// SIGUSR1 would kill it before; and not once SIGTERM is forwarded.
    pub fn asks_for_stats(&self) -> bool {
        self.watches_for_stalls()
    }

    /// tcpdump's status once reaped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match self {
            Lifecycle::Exited(status) => Some(*status),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;

    use super::*;

    fn exited() -> ExitStatus {
        ExitStatus::from_raw(0)
    }

    fn draining(now: Instant, listening: bool) -> Lifecycle {
        Lifecycle::Stopping(Stopping::Draining {
            forward_at: now + BLOCK_DRAIN,
            listening,
        })
    }

    #[test]
    fn starts_without_judging_silence_as_a_stall() {
        let state = Lifecycle::Starting;
        assert!(state.awaits_listening());
        assert!(state.ticks(), "the tick is what lets tcpdump rotate");
        assert!(!state.watches_for_stalls());
        assert!(
            !state.asks_for_stats(),
            "SIGUSR1 would kill tcpdump before its handler is installed"
        );
        assert_eq!(state.deadline(), None);
    }

    #[test]
    fn listening_starts_capturing_and_the_stall_watch() {
        let state = Lifecycle::Starting.on_listening();
        assert_eq!(state, Lifecycle::Capturing);
        assert!(state.watches_for_stalls());
        assert!(state.asks_for_stats());
        assert!(state.ticks());
        assert!(!state.awaits_listening());
        assert_eq!(state.deadline(), None);
    }

    #[test]
    fn first_stop_request_drains_the_kernel_before_forwarding() {
        let now = Instant::now();
        let (state, effect) = Lifecycle::Capturing.on_stop_request(now);
        assert_eq!(effect, Effect::Drain, "no signal reaches tcpdump yet");
        assert_eq!(state, draining(now, true));
        assert_eq!(state.deadline(), Some(now + BLOCK_DRAIN));
        assert!(state.ticks(), "capturing goes on while draining");
        assert!(state.watches_for_stalls());
    }

    #[test]
    fn stop_request_while_starting_drains_without_a_stall_watch() {
        let now = Instant::now();
        let (state, effect) = Lifecycle::Starting.on_stop_request(now);
        assert_eq!(effect, Effect::Drain);
        assert_eq!(state, draining(now, false));
        assert!(!state.watches_for_stalls());
        assert!(state.awaits_listening());
    }

    #[test]
    fn listening_while_draining_keeps_the_drain_deadline() {
        let now = Instant::now();
        let state = draining(now, false).on_listening();
        assert_eq!(state, draining(now, true));
        assert!(state.watches_for_stalls());
        assert!(!state.awaits_listening());
    }

    #[test]
    fn drain_deadline_forwards_sigterm_and_starts_the_grace() {
        let now = Instant::now();
        let later = now + BLOCK_DRAIN;
        let (state, effect) = draining(now, true).on_deadline(later);
        assert_eq!(effect, Effect::Terminate);
        assert_eq!(
            state,
            Lifecycle::Stopping(Stopping::Terminated {
                kill_at: later + STOP_GRACE
            })
        );
        assert_eq!(state.deadline(), Some(later + STOP_GRACE));
        assert!(!state.ticks(), "no more ticks once tcpdump is told to stop");
        assert!(!state.asks_for_stats());
        assert!(!state.watches_for_stalls());
    }

    #[test]
    fn grace_deadline_kills_a_tcpdump_that_did_not_stop() {
        let now = Instant::now();
        let terminated = Lifecycle::Stopping(Stopping::Terminated { kill_at: now });
        let (state, effect) = terminated.on_deadline(now);
        assert_eq!(effect, Effect::Kill(KillCause::GraceExpired));
        assert_eq!(state, Lifecycle::Stopping(Stopping::Killed));
        assert_eq!(state.deadline(), None, "only reaping is left");
        assert!(!state.ticks());
    }

    #[test]
    fn second_stop_request_kills_at_once_at_any_stage_of_stopping() {
        let now = Instant::now();
        for stopping in [
            draining(now, true),
            Lifecycle::Stopping(Stopping::Terminated { kill_at: now }),
            Lifecycle::Stopping(Stopping::Killed),
        ] {
            let (state, effect) = stopping.on_stop_request(now);
            assert_eq!(
                effect,
                Effect::Kill(KillCause::SecondRequest),
                "{stopping:?}"
            );
            assert_eq!(state, Lifecycle::Stopping(Stopping::Killed));
        }
    }

    #[test]
    fn no_deadline_fires_outside_stopping() {
        let now = Instant::now();
        for state in [
            Lifecycle::Starting,
            Lifecycle::Capturing,
            Lifecycle::Stopping(Stopping::Killed),
            Lifecycle::Exited(exited()),
        ] {
            assert_eq!(state.on_deadline(now), (state, Effect::Nothing));
        }
    }

    #[test]
    fn reaping_ends_the_life_from_any_state_with_its_status() {
        let now = Instant::now();
        let status = ExitStatus::from_raw(9); // killed by SIGKILL
        for state in [
            Lifecycle::Starting,
            Lifecycle::Capturing,
            draining(now, true),
            Lifecycle::Stopping(Stopping::Terminated { kill_at: now }),
            Lifecycle::Stopping(Stopping::Killed),
        ] {
            let exited = state.on_exit(status);
            assert_eq!(exited.exit_status(), Some(status), "{state:?}");
            assert!(!exited.ticks());
            assert!(!exited.awaits_listening());
            assert_eq!(exited.deadline(), None);
        }
    }

    #[test]
    fn a_stop_request_after_exit_signals_nothing() {
        let state = Lifecycle::Exited(exited());
        assert_eq!(
            state.on_stop_request(Instant::now()),
            (state, Effect::Nothing)
        );
        assert_eq!(state.on_listening(), state);
    }
}
