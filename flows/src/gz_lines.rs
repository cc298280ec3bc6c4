//! Reading a gzip JSON-lines object as its bytes arrive, within limits:
//! gzip is undone in a fixed window, the decompressed size is capped (a
//! gzip bomb is refused, not held), lines are split with a length limit,
//! and each non-blank line goes to a [`LineHandler`] as soon as it ends.
//! Any node's role can write the bucket's flow indexes and identity
//! journals, so both are read through this one reader.

use std::io::Write;

/// Limits on reading one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineLimits {
    pub max_decompressed: u64,
    pub max_line: usize,
}

/// What is made of each line.
pub trait LineHandler {
    type Error;
    /// One non-blank line (without its newline).
    fn line(&mut self, line: &[u8]) -> Result<(), Self::Error>;
}

/// Why an object was refused while reading it.
#[derive(Debug)]
pub enum LinesError<E> {
    TooLarge {
        limit: u64,
    },
    LineTooLong {
        line: u64,
        limit: usize,
    },
    Gzip(std::io::Error),
    /// The handler refused line number `line` (from 1).
    Line {
        line: u64,
        error: E,
    },
}

/// The reader: [`Self::feed`] the compressed bytes, then [`Self::finish`].
pub struct GzLines<H: LineHandler> {
    decoder: flate2::write::GzDecoder<Sink<H>>,
}

impl<H: LineHandler> std::fmt::Debug for GzLines<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzLines").finish_non_exhaustive()
    }
}

struct Sink<H: LineHandler> {
    limits: LineLimits,
    line: Vec<u8>,
    lines: u64,
    decompressed: u64,
    handler: H,
    /// Why the sink refused more (the decoder only carries an io::Error).
    failed: Option<LinesError<H::Error>>,
}

impl<H: LineHandler> Sink<H> {
    fn refuse(&mut self, why: LinesError<H::Error>) -> std::io::Error {
        self.failed = Some(why);
        std::io::Error::other("object refused")
    }

    fn end_line(&mut self) -> Result<(), LinesError<H::Error>> {
        self.lines += 1;
        if !self.line.trim_ascii().is_empty() {
            self.handler
                .line(&self.line)
                .map_err(|error| LinesError::Line {
                    line: self.lines,
                    error,
                })?;
        }
        self.line.clear();
        Ok(())
    }
}

impl<H: LineHandler> Write for Sink<H> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(why) = self.failed.take() {
            return Err(self.refuse(why));
        }
        self.decompressed = self.decompressed.saturating_add(buf.len() as u64);
        if self.decompressed > self.limits.max_decompressed {
            let limit = self.limits.max_decompressed;
            return Err(self.refuse(LinesError::TooLarge { limit }));
        }
        for (i, piece) in buf.split(|b| *b == b'\n').enumerate() {
            if i > 0
                && let Err(why) = self.end_line()
            {
                return Err(self.refuse(why));
            }
            if self.line.len() + piece.len() > self.limits.max_line {
                let (line, limit) = (self.lines + 1, self.limits.max_line);
                return Err(self.refuse(LinesError::LineTooLong { line, limit }));
            }
            self.line.extend_from_slice(piece);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<H: LineHandler> GzLines<H> {
    pub fn new(limits: LineLimits, handler: H) -> Self {
        let sink = Sink {
            limits,
            line: Vec::new(),
            lines: 0,
            decompressed: 0,
            handler,
            failed: None,
        };
        Self {
            decoder: flate2::write::GzDecoder::new(sink),
        }
    }

    /// The next compressed bytes of the object.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), LinesError<H::Error>> {
        self.decoder.write_all(chunk).map_err(|e| {
            self.decoder
                .get_mut()
                .failed
                .take()
                .unwrap_or(LinesError::Gzip(e))
        })
    }

    /// The object ended: its last line (without a newline) is read too.
    /// Returns the lines read and the handler.
    pub fn finish(mut self) -> Result<(u64, H), LinesError<H::Error>> {
        if let Err(e) = self.decoder.try_finish() {
            return Err(self
                .decoder
                .get_mut()
                .failed
                .take()
                .unwrap_or(LinesError::Gzip(e)));
        }
        let mut sink = self.decoder.finish().map_err(LinesError::Gzip)?;
        if !sink.line.is_empty() {
            sink.end_line()?;
        }
        Ok((sink.lines, sink.handler))
    }
}
