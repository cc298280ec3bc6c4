//! Writing a capture's index: the flow table's records as gzip JSON lines,
//! written as flows finish, so neither the flows nor the output are held
//! whole; and reading one back as a stream, within limits, since any
//! node's role can write any node's index.

use std::io::{BufWriter, Write};

use flate2::Compression;
use flate2::write::GzEncoder;
use spool::pcap::{PcapCheck, PcapSummary, Record};

use crate::gz_lines::{GzLines, LineHandler, LineLimits, LinesError};
use crate::schema::FlowRecord;
use crate::table::{FlowTable, TableStats};

/// The index could not be written.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot write the flow index: {0}")]
    Write(#[from] std::io::Error),
    #[error("cannot encode a flow record: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(
        "the flow index passed {limit} bytes compressed (the capture holds more flows than an index object is allowed to name)"
    )]
    TooLarge { limit: u64 },
    #[error("index object {0}")]
    Read(#[from] ReadError),
}

/// The largest index object the uploader writes (compressed): 18 to 25
/// bytes a flow, so 1.3 to 1.8 million flows. Past it the index is skipped
/// and the capture's metadata says so; the capture is uploaded all the
/// same. The uploader holds an index in memory until it is sent.
pub const MAX_INDEX_BYTES: u64 = 32 << 20;

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
    out: BufWriter<GzEncoder<Capped<W>>>,
    /// The first write error; later records are still counted, not written.
    failed: Option<IndexError>,
}

impl<W: Write> IndexWriter<W> {
    /// `capture` is the capture's object key: every record names it.
    pub fn new(capture: impl Into<String>, out: W) -> Self {
        let capped = Capped {
            inner: out,
            written: 0,
            limit: MAX_INDEX_BYTES,
        };
        Self {
            table: FlowTable::new(capture),
            out: BufWriter::with_capacity(JSON_BUFFER, GzEncoder::new(capped, INDEX_COMPRESSION)),
            failed: None,
        }
    }

    /// Holds at most `max_live` flows (see [`FlowTable::max_live`]).
    pub fn max_live_flows(mut self, max_live: usize) -> Self {
        self.table = self.table.max_live(max_live);
        self
    }

    /// Refuses to write more than `limit` compressed bytes instead of
    /// [`MAX_INDEX_BYTES`].
    pub fn max_bytes(mut self, limit: u64) -> Self {
        self.out.get_mut().get_mut().limit = limit;
        self
    }

    /// Accounts for one record: the callback of
    /// [`PcapCheck::feed_with`](spool::pcap::PcapCheck::feed_with).
    pub fn add(&mut self, record: Record<'_>) {
        self.table.add(record);
        if self.failed.is_none() {
            for done in self.table.drain() {
                if let Err(e) = write_record(&mut self.out, &done) {
                    self.failed = Some(e);
                    break;
                }
            }
        }
        if self.failed.is_some() {
            // Counted, not kept: the index is given up, memory stays flat.
            self.table.drain().for_each(drop);
        }
    }

    /// Writes the flows still live and ends the gzip stream.
    pub fn finish(self) -> Result<(W, TableStats), IndexError> {
        let limit = self.out.get_ref().get_ref().limit;
        // The limit's error comes back wrapped (by serde_json, by flate2).
        let too_large = |e: IndexError| {
            if e.to_string().contains(OVER_LIMIT) {
                IndexError::TooLarge { limit }
            } else {
                e
            }
        };
        if let Some(e) = self.failed {
            return Err(too_large(e));
        }
        let mut out = self.out;
        let mut failed = None;
        let stats = self.table.finish_each(|record| {
            if failed.is_none()
                && let Err(e) = write_record(&mut out, &record)
            {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(too_large(e));
        }
        let finished = out
            .into_inner()
            .map_err(|e| IndexError::from(e.into_error()))
            .and_then(|gz| Ok(gz.finish()?));
        Ok((finished.map_err(too_large)?.inner, stats))
    }
}

fn write_record(out: &mut impl Write, record: &FlowRecord) -> Result<(), IndexError> {
    serde_json::to_writer(&mut *out, record)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// The compressed output, refusing to grow past a limit.
#[derive(Debug)]
struct Capped<W> {
    inner: W,
    written: u64,
    limit: u64,
}

/// The message of the error [`Capped`] returns, to tell it from the
/// output's own errors.
const OVER_LIMIT: &str = "the flow index is over its size limit";

impl<W: Write> Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written.saturating_add(buf.len() as u64) > self.limit {
            return Err(std::io::Error::other(OVER_LIMIT));
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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

/// The most an index object may decompress to when read: far above what
/// an index of [`MAX_INDEX_BYTES`] holds (JSON lines compress some 10 to
/// 20 times), far below what a gzip bomb holds.
pub const MAX_READ_DECOMPRESSED: u64 = 2 << 30;
/// The longest line read: a record is well under 2 KiB even with a
/// 1,024-byte capture key.
pub const MAX_READ_LINE: usize = 64 << 10;

/// Limits on reading one index object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    pub max_decompressed: u64,
    pub max_line: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_decompressed: MAX_READ_DECOMPRESSED,
            max_line: MAX_READ_LINE,
        }
    }
}

/// Why an index object was refused while reading it.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "decompresses to more than {limit} bytes (an index the uploader writes stays far below; this object is not one)"
    )]
    TooLarge { limit: u64 },
    #[error(
        "has a line longer than {limit} bytes at line {line} (a flow record is under 2 KiB; this object is not an index)"
    )]
    LineTooLong { line: u64, limit: usize },
    #[error("is not gzip: {0}")]
    Gzip(std::io::Error),
    #[error("line {line} is not a flow record: {source}")]
    Record {
        line: u64,
        source: serde_json::Error,
    },
}

impl From<LinesError<serde_json::Error>> for ReadError {
    fn from(e: LinesError<serde_json::Error>) -> Self {
        match e {
            LinesError::TooLarge { limit } => Self::TooLarge { limit },
            LinesError::LineTooLong { line, limit } => Self::LineTooLong { line, limit },
            LinesError::Gzip(e) => Self::Gzip(e),
            LinesError::Line { line, error } => Self::Record {
                line,
                source: error,
            },
        }
    }
}

/// Reads an index object as its bytes arrive ([`GzLines`]: bounded gzip
/// window and line length), each record to the callback as soon as its
/// line ends. Nothing of the object is kept.
pub struct IndexReader<F: FnMut(FlowRecord)> {
    lines: GzLines<Records<F>>,
}

impl<F: FnMut(FlowRecord)> std::fmt::Debug for IndexReader<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexReader").finish_non_exhaustive()
    }
}

/// Each line parsed as a flow record, handed on.
struct Records<F>(F);

impl<F: FnMut(FlowRecord)> LineHandler for Records<F> {
    type Error = serde_json::Error;
    fn line(&mut self, line: &[u8]) -> Result<(), serde_json::Error> {
        (self.0)(serde_json::from_slice(line)?);
        Ok(())
    }
}

impl<F: FnMut(FlowRecord)> IndexReader<F> {
    /// Hands each record to `on_record` as it is read.
    pub fn new(limits: ReadLimits, on_record: F) -> Self {
        let limits = LineLimits {
            max_decompressed: limits.max_decompressed,
            max_line: limits.max_line,
        };
        Self {
            lines: GzLines::new(limits, Records(on_record)),
        }
    }

    /// The next compressed bytes of the object.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ReadError> {
        Ok(self.lines.feed(chunk)?)
    }

    /// The object ended: its last line (without a newline) is read too.
    /// Returns the lines read.
    pub fn finish(self) -> Result<u64, ReadError> {
        Ok(self.lines.finish()?.0)
    }
}

/// Reads an index object's bytes (gzip JSON lines) back into records,
/// within the default [`ReadLimits`].
pub fn read_index(mut gz: impl std::io::Read) -> Result<Vec<FlowRecord>, IndexError> {
    let mut records = Vec::new();
    let mut reader = IndexReader::new(ReadLimits::default(), |r| records.push(r));
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let n = match gz.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        reader.feed(&buffer[..n])?;
    }
    reader.finish()?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn gzip(parts: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        for part in parts {
            gz.write_all(&part).unwrap();
        }
        gz.finish().unwrap()
    }

    fn read(gz: &[u8], limits: ReadLimits) -> Result<usize, ReadError> {
        let mut records = 0;
        let mut reader = IndexReader::new(limits, |_| records += 1);
        for chunk in gz.chunks(4096) {
            reader.feed(chunk)?;
        }
        reader.finish()?;
        Ok(records)
    }

    #[test]
    fn an_index_that_is_one_endless_line_is_refused_at_the_line_limit() {
        // 64 MiB of zeros, no newline: some 64 KB compressed (the bucket
        // test has the 1 GiB one).
        let bomb = gzip((0..64).map(|_| vec![0u8; 1 << 20]));
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let e = read(&bomb, ReadLimits::default()).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::LineTooLong {
                    line: 1,
                    limit: MAX_READ_LINE
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn an_index_that_decompresses_past_the_limit_is_refused() {
        let newlines = gzip((0..16).map(|_| vec![b'\n'; 1 << 20]));
        let limits = ReadLimits {
            max_decompressed: 8 << 20,
            ..ReadLimits::default()
        };
        let e = read(&newlines, limits).unwrap_err();
        assert!(
            matches!(e, ReadError::TooLarge { limit } if limit == 8 << 20),
            "{e}"
        );
    }

    #[test]
    fn records_are_read_as_they_stream_in_and_a_cut_object_is_an_error() {
        let mut writer = IndexWriter::new("k", Vec::new());
        let mut check = PcapCheck::new();
        check.feed_with(&[], |r| writer.add(r));
        let (empty, _) = writer.finish().unwrap();
        assert_eq!(read(&empty, ReadLimits::default()).unwrap(), 0);
        let line = br#"{"capture":"k","proto":"udp","src":"10.0.0.1","sport":1,"dst":"10.0.0.2","dport":2,"first":"2026-11-27T14:25:03Z","last":"2026-11-27T14:25:03Z","packets_src":1,"bytes_src":60,"packets_dst":0,"bytes_dst":0,"resets_src":0,"resets_dst":0,"resets_in_handshake":0,"syn_unanswered":0,"retransmissions":0,"zero_windows":0,"dns_unanswered":0,"dns_nxdomain":0,"dns_servfail":0,"icmp_unreachable":0,"icmp_frag_needed":0,"handshake_us":null,"dns_slowest_us":null,"first_symptom":null}"#;
        // A schema-1 record (no dup_acks, dns_slow, partial), the last
        // without a newline.
        let gz = gzip([line.to_vec(), b"\n".to_vec(), line.to_vec()]);
        assert_eq!(read(&gz, ReadLimits::default()).unwrap(), 2);
        let cut = &gz[..gz.len() - 10];
        assert!(matches!(
            read(cut, ReadLimits::default()),
            Err(ReadError::Gzip(_))
        ));
    }

    #[test]
    fn an_index_past_its_size_limit_is_given_up_not_grown() {
        let mut writer = IndexWriter::new("k", Vec::new()).max_bytes(100);
        for i in 0..2_000u16 {
            let mut frame = Vec::new();
            etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
                .ipv4([10, 0, (i >> 8) as u8, i as u8], [10, 9, 9, 9], 64)
                .udp(1000 + i, 53)
                .write(&mut frame, &[0u8; 12])
                .unwrap();
            writer.add(Record {
                at: std::time::Duration::from_secs(1_796_000_000 + u64::from(i)),
                link_type: 1,
                data: &frame,
                original_len: frame.len() as u32,
            });
        }
        let e = writer.finish().unwrap_err();
        assert!(matches!(e, IndexError::TooLarge { limit: 100 }), "{e}");
    }
}
