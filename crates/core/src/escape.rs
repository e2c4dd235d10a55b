//! Untrusted text made safe to show: control characters escaped, so that a token (or a path, a
//! rule name of a metric family, a log field) can neither forge a log line, split a record,
//! nor drive a terminal.
//!
//! One rule for every front end: the characters of [`is_unsafe`] are written the way Rust
//! escapes them (`\u{1b}`, `\u{a}`, `\u{2028}`), everything else as it is. A backslash is left
//! alone, so escaping twice changes nothing (the access-log parser's messages already escape
//! control characters this way); the price is that a token spelling `\u{a}` looks like one
//! holding a newline. Records that must keep the exact text use JSON (`--format jsonl`).

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Whether `c` must not reach a log, a record or a terminal as it is: the C0 controls
/// (newline, carriage return, tab, escape, bell, …), DEL, the C1 controls (U+0080 to U+009F,
/// among them NEL and the 8-bit CSI), and the Unicode line and paragraph separators (U+2028,
/// U+2029), which some viewers and parsers take for line breaks.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `text` with each character of [`is_unsafe`] escaped (`\u{1b}`); borrowed when it has none.
/// For tables and padded columns; [`Escaped`] writes the same without allocating.
pub fn escape(text: &str) -> Cow<'_, str> {
    if text.chars().any(is_unsafe) {
        Cow::Owned(Escaped(text).to_string())
    } else {
        Cow::Borrowed(text)
    }
}

/// Displays its value with the characters of [`is_unsafe`] escaped, as it is written: for log
/// fields (`token = %Escaped(token)`) and format arguments. Width and alignment are not
/// applied; pad [`escape`]'s result instead.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapingWriter(f), "{}", self.0)
    }
}

/// Passes text on with the characters of [`is_unsafe`] escaped.
struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for piece in pieces(s) {
            match piece {
                Piece::Safe(text) => self.0.write_str(text)?,
                Piece::Unsafe(c) => write!(self.0, "{}", c.escape_unicode())?,
            }
        }
        Ok(())
    }
}

/// A run of text to write as it is, or one character to escape.
enum Piece<'a> {
    Safe(&'a str),
    Unsafe(char),
}

/// `text` cut into runs without a character of [`is_unsafe`] and those characters.
fn pieces(text: &str) -> impl Iterator<Item = Piece<'_>> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let mut chars = rest.chars();
        let first = chars.next()?;
        if is_unsafe(first) {
            rest = chars.as_str();
            return Some(Piece::Unsafe(first));
        }
        let end = rest.find(is_unsafe).unwrap_or(rest.len());
        let (safe, after) = rest.split_at(end);
        rest = after;
        Some(Piece::Safe(safe))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORGED: &str = "\u{1b}]0;x\u{7}\n2019 INFO UNBAN. token=1.2.3.4";

    #[test]
    fn controls_and_separators_are_escaped_and_the_rest_kept() {
        assert_eq!(
            escape(FORGED),
            "\\u{1b}]0;x\\u{7}\\u{a}2019 INFO UNBAN. token=1.2.3.4"
        );
        assert_eq!(
            escape("a\u{7f}b\u{85}c\u{9b}d\u{2028}e\u{2029}f\r\t\u{b}"),
            "a\\u{7f}b\\u{85}c\\u{9b}d\\u{2028}e\\u{2029}f\\u{d}\\u{9}\\u{b}"
        );
        assert!(matches!(
            escape("2001:db8::/64 é ü \\ \""),
            Cow::Borrowed(_)
        ));
        assert_eq!(Escaped(FORGED).to_string(), escape(FORGED));
    }

    #[test]
    fn escaping_twice_changes_nothing() {
        let once = escape(FORGED).into_owned();
        assert_eq!(escape(&once), once);
    }
}
