//! `captures`: reads what the uploader wrote, for the person on call.
//!
//! [`archive`] lists the captures of a time window, finds flows in the flow
//! index and downloads captures verified against their SHA-256; [`merge`]
//! merges them by time; [`explain`] reads pcap files through the flow
//! index's table (the same code the uploader indexes with, [`flows`]) and
//! reports the symptoms of intermittent connectivity, worst first; [`pin`]
//! and [`receiver`] make the flight recorder's pins (by hand, and from
//! Alertmanager's webhook).

pub mod archive;
pub mod explain;
pub mod identity;
pub mod merge;
pub mod pin;
pub mod receiver;
pub mod untrusted;
pub mod window;

pub use explain::{ExplainError, Report, explain};
