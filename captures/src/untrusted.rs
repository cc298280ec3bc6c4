//! Text and numbers from the bucket, made safe to print for a person.
//!
//! Any node's role can write any key, metadata and index record, so a key,
//! a node name or an index's `capture` and `proto` field can carry terminal
//! escape sequences (clear the screen, rewrite the line above, set the
//! window title). Human output shows them through [`escaped`]; JSON output
//! is escaped by serde already.

use std::fmt;

/// `text` with its control characters (C0, DEL, C1) and the Unicode
/// direction overrides written as `\u{…}` escapes (`\n`, `\t`, `\r` as
/// themselves escaped), and everything else, ordinary Unicode included, as
/// it is. Backslashes are left alone, so that a plain key can still be
/// copied from the output.
pub fn escaped(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// See [`escaped`].
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(is_unsafe) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(f, "{}", c.escape_debug())?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// Characters a terminal acts on, or that reorder what it shows (the
/// bidirectional embeddings, overrides and isolates: "Trojan Source").
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A symptom count summed with saturating arithmetic: at `u64::MAX` it is
/// a floor (the index's counters overflowed it), shown as `≥…`.
pub fn count(n: u64) -> String {
    if n == u64::MAX {
        format!("≥{n}")
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_escaped_and_ordinary_unicode_as_is() {
        assert_eq!(
            escaped("a\x1b[2Jb\x07c\u{9b}31m\r\n").to_string(),
            r"a\u{1b}[2Jb\u{7}c\u{9b}31m\r\n"
        );
        assert_eq!(escaped("x\u{202e}gpj.exe").to_string(), r"x\u{202e}gpj.exe");
        let plain = "tcp-dumps/nœud-é/2026/11/27/14/tcpdump-20261127T140000Z-0.pcap";
        assert_eq!(escaped(plain).to_string(), plain);
        assert_eq!(escaped(r"a\b").to_string(), r"a\b");
    }

    #[test]
    fn a_saturated_count_is_shown_as_a_floor() {
        assert_eq!(count(7), "7");
        assert_eq!(count(u64::MAX), "≥18446744073709551615");
    }
}
