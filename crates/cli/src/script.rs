//! The event-script line: `<unix_seconds> <token> <metric> [attr=value ...]`.

use banhammer_core::Timestamp;

/// One parsed event line, borrowing from the line's text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct EventLine<'a> {
    pub(crate) at: Timestamp,
    pub(crate) token: &'a str,
    pub(crate) metric: &'a str,
    pub(crate) attrs: Vec<(&'a str, &'a str)>,
}

/// At most this many attributes per event.
const MAX_ATTRS: usize = 32;

/// Parses one line; `Ok(None)` for blank lines and `#` comments.
pub(crate) fn parse(line: &str) -> Result<Option<EventLine<'_>>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut fields = line.split_ascii_whitespace();
    let time = fields.next().unwrap_or_default();
    let at = time
        .parse::<i64>()
        .map_err(|_| format!("`{}` is not a time in whole unix seconds", shorten(time)))?;
    let token = fields.next().ok_or("missing token and metric")?;
    let metric = fields.next().ok_or("missing metric")?;
    let mut attrs = Vec::new();
    for field in fields {
        let (k, v) = field
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("`{}` is not attr=value", shorten(field)))?;
        if attrs.len() == MAX_ATTRS {
            return Err(format!("more than {MAX_ATTRS} attributes"));
        }
        attrs.push((k, v));
    }
    Ok(Some(EventLine {
        at: Timestamp::from_unix(at),
        token,
        metric,
        attrs,
    }))
}

fn shorten(s: &str) -> &str {
    let mut end = s.len().min(40);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_events_with_attributes() {
        let e = parse("  12 1.2.3.4 detect email=a@b.c bytes=10 ")
            .unwrap()
            .unwrap();
        assert_eq!(e.at, Timestamp::from_unix(12));
        assert_eq!(e.token, "1.2.3.4");
        assert_eq!(e.metric, "detect");
        assert_eq!(e.attrs, [("email", "a@b.c"), ("bytes", "10")]);
    }

    #[test]
    fn skips_blank_lines_and_comments() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   # a comment"), Ok(None));
    }

    #[test]
    fn says_why_a_line_is_malformed() {
        assert_eq!(
            parse("x a m").unwrap_err(),
            "`x` is not a time in whole unix seconds"
        );
        assert_eq!(parse("1").unwrap_err(), "missing token and metric");
        assert_eq!(parse("1 a").unwrap_err(), "missing metric");
        assert_eq!(parse("1 a m =v").unwrap_err(), "`=v` is not attr=value");
        assert_eq!(parse("1 a m k").unwrap_err(), "`k` is not attr=value");
    }
}
