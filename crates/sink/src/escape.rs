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
use std::io;

use serde::Serialize;

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

/// serde_json's compact output, but with the characters of [`is_unsafe`] that serde_json
/// leaves as they are (DEL, the C1 controls, U+2028, U+2029; it escapes the C0 ones) written
/// as `\uXXXX` too: the value read back is the same, and the line shows no raw control.
struct PrintableJson;

impl serde_json::ser::Formatter for PrintableJson {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for piece in pieces(fragment) {
            match piece {
                Piece::Safe(text) => writer.write_all(text.as_bytes())?,
                // All of them are below U+FFFF: one UTF-16 unit, one `\uXXXX`.
                Piece::Unsafe(c) => write!(writer, "\\u{:04x}", u32::from(c))?,
            }
        }
        Ok(())
    }
}

/// Writes `value` as one line of JSON (no newline) with every control character escaped.
pub(crate) fn write_json<W: io::Write, T: Serialize>(out: W, value: &T) -> io::Result<()> {
    let mut serializer = serde_json::Serializer::with_formatter(out, PrintableJson);
    value.serialize(&mut serializer).map_err(io::Error::other)
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

    #[test]
    fn json_reads_back_the_same_text_with_no_raw_control() {
        let text = format!("{FORGED}\u{7f}\u{85}\u{9b}\u{2028}\u{2029}\"\\");
        let mut out = Vec::new();
        write_json(&mut out, &serde_json::json!({ "token": text })).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(!line.chars().any(is_unsafe), "{line:?}");
        assert!(
            line.contains("\\u007f\\u0085\\u009b\\u2028\\u2029"),
            "{line}"
        );
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["token"], text);
    }
}
