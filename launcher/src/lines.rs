//! tcpdump's stderr cut into log lines, in bounded memory.
//!
//! tcpdump ends most messages with `\n`, but with `-v` and `-w` it rewrites
//! one progress line in place every second (`Got 12\r`), never ending it.
//! Read up to `\n` only, that line would grow for as long as tcpdump runs
//! and hide every message after it. So a line ends at `\r` as well, and a
//! line longer than [`MAX_LINE_BYTES`] is cut there.

/// Longest line kept; the rest of a longer one is dropped, marked.
pub const MAX_LINE_BYTES: usize = 4096;

/// Appended to a line that was cut at [`MAX_LINE_BYTES`].
pub const TRUNCATED_MARKER: &str = " [line truncated]";

/// Cuts a byte stream into lines ending at `\n` or `\r`, each at most
/// [`MAX_LINE_BYTES`] long; empty lines are skipped.
#[derive(Debug, Default)]
pub struct LineSplitter {
    line: Vec<u8>,
    /// The current line was cut and emitted: drop bytes until its end.
    skipping: bool,
}

impl LineSplitter {
    /// Takes the next bytes of the stream; calls `emit` with each line they
    /// complete (a cut line as soon as it reaches the limit).
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&str)) {
        for &byte in bytes {
            match byte {
                b'\n' | b'\r' => {
                    self.skipping = false;
                    self.emit_line(&mut emit, "");
                }
                _ if self.skipping => {}
                _ if self.line.len() == MAX_LINE_BYTES => {
                    self.emit_line(&mut emit, TRUNCATED_MARKER);
                    self.skipping = true;
                }
                _ => self.line.push(byte),
            }
        }
    }

    /// Emits what is left at the end of the stream.
    pub fn finish(&mut self, mut emit: impl FnMut(&str)) {
        self.emit_line(&mut emit, "");
    }

    fn emit_line(&mut self, emit: &mut impl FnMut(&str), suffix: &str) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end();
        if !text.is_empty() {
            emit(&format!("{text}{suffix}"));
        }
        self.line.clear();
    }

    /// Bytes held for the current line (bounded by [`MAX_LINE_BYTES`]).
    pub fn held_bytes(&self) -> usize {
        self.line.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> (Vec<String>, LineSplitter) {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, |l| lines.push(l.to_owned()));
        }
        splitter.finish(|l| lines.push(l.to_owned()));
        (lines, splitter)
    }

    #[test]
    fn verbose_progress_lines_ending_in_carriage_returns_are_lines_of_their_own() {
        let (lines, _) = split(&[
            b"tcpdump: listening on lo\nGot 1\rGot ",
            b"2\rGot 3\r",
            b"\n3 packets captured\r\n",
        ]);
        assert_eq!(
            lines,
            [
                "tcpdump: listening on lo",
                "Got 1",
                "Got 2",
                "Got 3",
                "3 packets captured"
            ]
        );
    }

    #[test]
    fn a_10_mb_line_without_an_end_is_cut_once_and_memory_stays_bounded() {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        let chunk = [b'x'; 8192];
        for _ in 0..(10 * 1024 * 1024 / chunk.len()) {
            splitter.push(&chunk, |l| lines.push(l.to_owned()));
            assert!(splitter.held_bytes() <= 2 * MAX_LINE_BYTES);
        }
        splitter.push(b"\nlater message\n", |l| lines.push(l.to_owned()));
        assert_eq!(
            lines.len(),
            2,
            "{:?}",
            lines.iter().map(String::len).collect::<Vec<_>>()
        );
        assert_eq!(
            lines[0],
            format!("{}{TRUNCATED_MARKER}", "x".repeat(MAX_LINE_BYTES))
        );
        assert_eq!(lines[1], "later message");
    }
}
