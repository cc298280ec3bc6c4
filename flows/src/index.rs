//! Writing a capture's index: the flow table's records as gzip JSON lines,
//! written as flows finish, so neither the flows nor the output are held
//! whole.

use std::io::{BufWriter, Write};

use flate2::Compression;
use flate2::write::GzEncoder;
use spool::pcap::{PcapCheck, PcapSummary, Record};

use crate::schema::FlowRecord;
use crate::table::{FlowTable, TableStats};

/// The index could not be written.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot write the flow index: {0}")]
    Write(#[from] std::io::Error),
    #[error("cannot encode a flow record: {0}")]
    Encode(#[from] serde_json::Error),
}

/// gzip's fastest level: an index is a few hundred bytes a flow and read
/// rarely, so the uploader's CPU matters more than its last kilobytes.
const INDEX_COMPRESSION: Compression = Compression::fast();

/// Bytes of JSON gathered before they go to the compressor. flate2 zeroes
/// its output buffer's spare room (32 KiB) on every write it is given, and
/// a record is written in dozens of small pieces: unbuffered, that zeroing
/// was most of the uploader's CPU for captures of many short flows.
const JSON_BUFFER: usize = 64 * 1024;

/// Builds one capture's index from its records, writing to `W`.
#[derive(Debug)]
pub struct IndexWriter<W: Write> {
    table: FlowTable,
    out: BufWriter<GzEncoder<W>>,
    /// The first write error; later records are still counted, not written.
    failed: Option<IndexError>,
}

impl<W: Write> IndexWriter<W> {
    /// `capture` is the capture's object key: every record names it.
    pub fn new(capture: impl Into<String>, out: W) -> Self {
        Self {
            table: FlowTable::new(capture),
            out: BufWriter::with_capacity(JSON_BUFFER, GzEncoder::new(out, INDEX_COMPRESSION)),
            failed: None,
        }
    }

    /// Accounts for one record: the callback of
    /// [`PcapCheck::feed_with`](spool::pcap::PcapCheck::feed_with).
    pub fn add(&mut self, record: Record<'_>) {
        self.table.add(record);
        if self.failed.is_none() {
            let done: Vec<FlowRecord> = self.table.drain().collect();
            if let Err(e) = write_records(&mut self.out, &done) {
                self.failed = Some(e);
            }
        }
    }

    /// Writes the flows still live and ends the gzip stream.
    pub fn finish(self) -> Result<(W, TableStats), IndexError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let (rest, stats) = self.table.finish();
        let mut out = self.out;
        write_records(&mut out, &rest)?;
        let gz = out.into_inner().map_err(|e| e.into_error())?;
        Ok((gz.finish()?, stats))
    }
}

fn write_records(out: &mut impl Write, records: &[FlowRecord]) -> Result<(), IndexError> {
    for record in records {
        serde_json::to_writer(&mut *out, record)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The pcap check and the index in one: fed the same chunks as the hashing
/// read, it checks the capture and indexes it without a second read.
#[derive(Debug)]
pub struct IndexingCheck<W: Write> {
    check: PcapCheck,
    index: IndexWriter<W>,
}

impl<W: Write> IndexingCheck<W> {
    pub fn new(capture: impl Into<String>, out: W) -> Self {
        Self {
            check: PcapCheck::new(),
            index: IndexWriter::new(capture, out),
        }
    }

    /// Consumes the next bytes of the capture.
    pub fn feed(&mut self, chunk: &[u8]) {
        let index = &mut self.index;
        self.check.feed_with(chunk, |record| index.add(record));
    }

    /// The pcap check's summary, and the finished index.
    pub fn finish(self) -> (PcapSummary, Result<(W, TableStats), IndexError>) {
        (self.check.finish(), self.index.finish())
    }
}

/// Reads an index object's bytes (gzip JSON lines) back into records.
pub fn read_index(gz: impl std::io::Read) -> Result<Vec<FlowRecord>, IndexError> {
    use std::io::BufRead;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(gz));
    let mut records = Vec::new();
    for line in reader.lines() {
        let line = line?;
        if !line.trim().is_empty() {
            records.push(serde_json::from_str(&line)?);
        }
    }
    Ok(records)
}
