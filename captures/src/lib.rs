//! `captures`: reads what the uploader wrote, for the person on call.
//!
//! [`explain`] reads pcap files through the flow index's table (the same
//! code the uploader indexes with, [`flows`]) and reports the symptoms of
//! intermittent connectivity, worst first, with the times to jump to.

pub mod explain;

pub use explain::{ExplainError, Report, explain};
