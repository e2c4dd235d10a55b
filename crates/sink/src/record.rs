//! Decision records: the challenge's CSV line, or one JSON object per line. Either way one
//! record is one line, whatever the token holds.

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
            // Control characters escaped first, so that a record is one line; the csv crate
            // then quotes what needs quoting (RFC 4180).
            let token = escape(d.token.as_str());
            let at = d.at.as_unix().to_string();
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .terminator(csv::Terminator::Any(b'\n'))
                .from_writer(&mut *out);
            w.write_record([at.as_str(), d.verb(), &token])?;
            w.flush()
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
            String::from_utf8(out.clone()).unwrap(),
            "2,BAN,\"a\\u{1b}]0;x\\u{7}\\u{a}3,UNBAN,\"\"1.2.3.4\"\"\\u{2028}\"\n"
        );
        // Read back by a CSV reader: three fields, the token whole.
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(out.as_slice());
        let record = r.records().next().unwrap().unwrap();
        assert_eq!(record.len(), 3);
        assert_eq!(&record[2], escape(d.token.as_str()));
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
