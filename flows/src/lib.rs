//! The flow index: one record per flow of a capture (who talked to whom,
//! when, how much, and the symptoms of a failing connection), built from the
//! capture's records in the read that hashes it, and written next to it as
//! gzip JSON lines that DuckDB and Athena query in place.
//!
//! [`schema`] is the contract (the records' fields) shared with the
//! `captures` CLI; [`table`] tracks the live flows; [`decode`] turns a record
//! into addresses and the fields counted; [`index`] writes the object.
//!
//! The uploader feeds it from its hashing read, either with
//! [`IndexingCheck`] (same chunks as the hash) or, keeping its own
//! [`spool::pcap::PcapCheck`], with
//! `check.feed_with(chunk, |record| writer.add(record))`.

pub mod decode;
pub mod gz_lines;
pub mod index;
pub mod merge;
pub mod schema;
pub mod table;

pub use index::{
    IndexError, IndexReader, IndexWriter, IndexingCheck, MAX_INDEX_BYTES, ReadError, ReadLimits,
    read_index,
};
pub use merge::PartialMerger;
pub use schema::{FlowRecord, Symptom};
pub use table::{DnsAnswer, FlowTable, TableStats};
