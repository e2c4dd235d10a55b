//! Decision records: the challenge's CSV line, or one JSON object per line. Either way one
//! record is one line, whatever the token holds.

use std::borrow::Cow;
use std::io::{self, Write};

use banhammer_core::DecisionEvent;
use serde::Serialize;

use crate::escape::write_json;
use banhammer_core::escape;

/// How decisions are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecisionFormat {
    /// `<unix_seconds>,<VERB>,<token>`: the access-log challenge's format, no spaces. A token
    /// is shown with its control characters escaped, and quoted as CSV quotes (RFC 4180) if it
    /// holds a comma or a double quote.
    #[default]
    Csv,
    /// One JSON object per line, adding rule, tier, value, from and until. Strings are exact,
    /// with every control character `\u`-escaped.
    Jsonl,
}

/// The JSON-lines shape of a decision (only this crate and the HTTP front end know JSON).
#[derive(Serialize)]
struct DecisionJson<'a> {
    at: i64,
    decision: &'a str,
    token: &'a str,
    rule: &'a str,
    tier: usize,
    value: u64,
    from: i64,
    until: i64,
}

/// Writes `d` as one line in `format`. Extensions are not records (the formats list starts
/// and ends, as the access-log challenge does); they are skipped.
pub fn write_decision(
    out: &mut impl Write,
    d: &DecisionEvent,
    format: DecisionFormat,
) -> io::Result<()> {
    if !d.is_record() {
        return Ok(());
    }
    match format {
        DecisionFormat::Csv => {
            writeln!(out, "{},{},{}", d.at, d.verb(), csv_field(d.token.as_str()))
        }
        DecisionFormat::Jsonl => {
            let json = DecisionJson {
                at: d.at.as_unix(),
                decision: d.verb(),
                token: d.token.as_str(),
                rule: &d.metric,
                tier: d.tier,
                value: d.value,
                from: d.from.as_unix(),
                until: d.until.as_unix(),
            };
            write_json(&mut *out, &json)?;
            out.write_all(b"\n")
        }
    }
}

/// A CSV field on one line: control characters escaped; quoted, with its quotes doubled, if it
/// holds a comma or a double quote.
fn csv_field(text: &str) -> Cow<'_, str> {
    let text = escape(text);
    if text.contains([',', '"']) {
        Cow::Owned(format!("\"{}\"", text.replace('"', "\"\"")))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use banhammer_core::{Change, Effect, Timestamp, Token};

    use super::*;

    fn ban() -> DecisionEvent {
        DecisionEvent {
            at: Timestamp::from_unix(2),
            change: Change::Start,
            effect: Effect::Block,
            token: Token::new("10.0.0.1").unwrap(),
            metric: Arc::from("login"),
            tier: 1,
            value: 3,
            from: Timestamp::from_unix(2),
            until: Timestamp::from_unix(102),
            reason: None,
        }
    }

    #[test]
    fn csv_is_the_challenge_format() {
        let mut out = Vec::new();
        write_decision(&mut out, &ban(), DecisionFormat::Csv).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "2,BAN,10.0.0.1\n");
    }

    #[test]
    fn a_token_cannot_split_or_forge_a_csv_record() {
        let mut d = ban();
        d.token = Token::new("a\u{1b}]0;x\u{7}\n3,UNBAN,\"1.2.3.4\"\u{2028}").unwrap();
        let mut out = Vec::new();
        write_decision(&mut out, &d, DecisionFormat::Csv).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2,BAN,\"a\\u{1b}]0;x\\u{7}\\u{a}3,UNBAN,\"\"1.2.3.4\"\"\\u{2028}\"\n"
        );
    }

    #[test]
    fn jsonl_adds_rule_tier_value_and_until() {
        let mut out = Vec::new();
        write_decision(&mut out, &ban(), DecisionFormat::Jsonl).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["decision"], "BAN");
        assert_eq!(v["rule"], "login");
        assert_eq!(v["tier"], 1);
        assert_eq!(v["value"], 3);
        assert_eq!(v["until"], 102);
        assert!(out.ends_with(b"}\n"));
    }
}
