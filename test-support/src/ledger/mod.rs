//! The fault ledger (issue 13): the real launcher and uploader on one
//! spool, numbered datagrams on the wire, faults injected for a while, and
//! then a strict count of what reached the bucket. `bench/chaos` runs it.
//!
//! Stages, a module each: [`scenario`] (what the run will do) → [`rig`]
//! (garage in its own network namespace ([`garage_host`]) behind a
//! fault-injecting proxy ([`fault_proxy`]), the spool on a tmpfs, the
//! [`pipeline`] under test, the numbered [`traffic`]) → [`faults`] →
//! [`census`] of the bucket → [`summary`] and verdict. [`run`] strings
//! them together.

pub mod census;
pub mod fault_proxy;
pub mod faults;
pub mod garage_host;
pub mod pipeline;
pub mod rig;
pub mod run;
pub mod scenario;
pub mod summary;
pub mod traffic;

pub use run::run;
pub use scenario::{FaultKind, Scenario, parse_faults};
