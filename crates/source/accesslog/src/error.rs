//! `LineError`: why a line was not read, with the offending text and its column, built
//! without allocating.

use std::fmt;

use crate::MAX_LINE;

/// Why a line could not be read. Columns are 1-based byte offsets into the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// Longer than [`MAX_LINE`] bytes (not counting a trailing `\r\n`).
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    /// Not UTF-8.
    #[error("line is not UTF-8 (first bad byte at column {column})")]
    NotUtf8 {
        /// Where the first byte that is not UTF-8 is.
        column: usize,
    },
    /// Nothing but whitespace.
    #[error("empty line")]
    Empty,
    /// A CSV header line: callers skip it silently.
    #[error("header line")]
    Header,
    /// A line starting with `#` that does not read in the format (a comment, W3C-style
    /// `#Fields:` directives): callers skip it, as they skip empty lines.
    #[error("comment line")]
    Comment,
    /// Text the format requires is not there.
    #[error("expected `{expected}`{place} at column {column}")]
    Expected {
        /// The literal text, from the first character that differs.
        expected: Snippet,
        /// Where in the format.
        place: Near,
        /// Where the text differs.
        column: usize,
    },
    /// A field between quotes without its closing quote.
    #[error("no closing `\"` for {field} starting at column {column}")]
    Unterminated {
        /// Which field, e.g. `the request`.
        field: &'static str,
        /// Where the field starts.
        column: usize,
    },
    /// The client field is neither an address nor a host name.
    #[error("`{text}` is not an IP address or host name (column {column})")]
    BadClient {
        /// What was there.
        text: Snippet,
        /// Where.
        column: usize,
    },
    /// The time field is not a time in the format's layout.
    #[error("`{text}` is not a valid time (column {column})")]
    BadTime {
        /// What was there.
        text: Snippet,
        /// Where.
        column: usize,
    },
    /// A number field (status, bytes) is not a number.
    #[error("`{text}` is not a valid {what} (column {column})")]
    BadNumber {
        /// Which field: `status` or `byte count`.
        what: &'static str,
        /// What was there.
        text: Snippet,
        /// Where.
        column: usize,
    },
    /// Text after the last field.
    #[error("unexpected text `{text}` after the last field at column {column}")]
    Trailing {
        /// What was there.
        text: Snippet,
        /// Where it starts.
        column: usize,
    },
}

/// Where some expected text sits in a format, for messages: "expected `[` *before the time*".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Near {
    /// Before a field, named like `the time`.
    Before(&'static str),
    /// After a field (the format's last literal).
    After(&'static str),
    /// Not next to a field.
    Nowhere,
}

/// Writes ` before the time`, with its leading space, or nothing.
impl fmt::Display for Near {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Near::Before(field) => write!(f, " before {field}"),
            Near::After(field) => write!(f, " after {field}"),
            Near::Nowhere => Ok(()),
        }
    }
}

/// The start of some text from a line, kept inline so that errors need no allocation: up to
/// [`Snippet::CAPACITY`] bytes, cut at a character boundary, with `…` shown when cut. Control
/// characters are shown escaped (`\u{16}`) so that junk lines cannot drive a terminal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Snippet {
    bytes: [u8; Snippet::CAPACITY],
    len: u8,
    cut: bool,
}

impl Snippet {
    /// The most bytes kept.
    pub const CAPACITY: usize = 40;

    /// Keeps the start of `text`.
    pub fn new(text: &str) -> Snippet {
        let mut len = text.len().min(Snippet::CAPACITY);
        while !text.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; Snippet::CAPACITY];
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        Snippet {
            bytes,
            len: u8::try_from(len).unwrap_or(0),
            cut: len < text.len(),
        }
    }

    /// The text kept (without the `…`).
    pub fn as_str(&self) -> &str {
        // Always whole characters: `new` cuts at a boundary.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// Whether the text was longer than what is kept.
    pub fn is_cut(&self) -> bool {
        self.cut
    }
}

impl fmt::Display for Snippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.as_str().chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        if self.cut {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Snippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)?;
        if self.cut {
            f.write_str("…")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_cut_at_a_character_boundary_and_escape_controls() {
        let s = Snippet::new(&"é".repeat(30));
        assert_eq!(s.as_str(), "é".repeat(20));
        assert!(s.is_cut());
        assert_eq!(s.to_string(), format!("{}…", "é".repeat(20)));
        let s = Snippet::new("a\u{16}\u{3}b");
        assert_eq!(s.to_string(), "a\\u{16}\\u{3}b");
        assert!(!s.is_cut());
        assert_eq!(format!("{s:?}"), "\"a\\u{16}\\u{3}b\"");
    }

    #[test]
    fn errors_stay_small() {
        assert!(std::mem::size_of::<LineError>() <= 80);
    }
}
