//! JSON lines with no raw control character: serde_json escapes the C0 controls but leaves
//! DEL, the C1 controls and U+2028/U+2029 as they are; records escape those too (the rule for
//! every other output is the core's `escape`).

use std::io;

use banhammer_core::is_unsafe;
use serde::Serialize;

/// serde_json's compact output, with the characters of [`is_unsafe`] that serde_json leaves as
/// they are written as `\uXXXX` too: the value read back is the same, and the line shows no raw
/// control.
struct PrintableJson;

impl serde_json::ser::Formatter for PrintableJson {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(is_unsafe) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            // All of them are below U+FFFF: one UTF-16 unit, one `\uXXXX`.
            write!(writer, "\\u{:04x}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
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
