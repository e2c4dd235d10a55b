//! The access-log line parser: pure, total (never panics), bounded, allocation-free unless a
//! quoted field needs unescaping.

use std::borrow::Cow;
use std::net::IpAddr;

use banhammer_core::Timestamp;

use crate::format::{Field, Layout, LogFormat, Piece};

/// The longest line accepted, in bytes.
pub const MAX_LINE: usize = 16 * 1024;

/// One parsed access-log line, borrowing from the line's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogLine<'a> {
    /// The client address.
    pub client: IpAddr,
    /// The identd field (`-` is `None`).
    pub ident: Option<&'a str>,
    /// The authenticated user (`-` is `None`).
    pub user: Option<&'a str>,
    /// When the request was logged, timezone applied.
    pub time: Timestamp,
    /// The raw request line (`GET /a?b HTTP/1.1`), or what the server logged instead.
    pub request: &'a str,
    /// The method, if the request line is `METHOD TARGET [PROTOCOL]`.
    pub method: Option<&'a str>,
    /// The path, without the query string.
    pub path: Option<&'a str>,
    /// The query string, without its `?`.
    pub query: Option<&'a str>,
    /// The protocol, e.g. `HTTP/1.1`.
    pub protocol: Option<&'a str>,
    /// The response status.
    pub status: Option<u16>,
    /// The response body's size (`-` is `None`).
    pub bytes: Option<u64>,
    /// The referer (empty or `-` is `None`), unescaped.
    pub referer: Option<Cow<'a, str>>,
    /// The user agent (empty or `-` is `None`), unescaped.
    pub user_agent: Option<Cow<'a, str>>,
    /// The virtual host, if the format logs it.
    pub host: Option<&'a str>,
}

/// Why a line could not be read. Columns are 1-based byte offsets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// Longer than [`MAX_LINE`].
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    /// Not UTF-8.
    #[error("line is not UTF-8")]
    NotUtf8,
    /// Nothing but whitespace.
    #[error("empty line")]
    Empty,
    /// A CSV header line (callers skip it silently).
    #[error("header line")]
    Header,
    /// The text does not follow the format.
    #[error("expected {expected} at column {column}")]
    Expected {
        /// What the format wanted.
        expected: String,
        /// Where.
        column: usize,
    },
    /// A quoted field without its closing quote.
    #[error("unterminated quoted field starting at column {0}")]
    Unterminated(usize),
    /// The client field is not an address.
    #[error("`{text}` is not an IP address (column {column})")]
    BadClient {
        /// What was there (cut to 64 bytes).
        text: String,
        /// Where.
        column: usize,
    },
    /// The time field is not a time in the format's layout.
    #[error("`{text}` is not a valid time (column {column})")]
    BadTime {
        /// What was there (cut to 64 bytes).
        text: String,
        /// Where.
        column: usize,
    },
    /// A number field (status, bytes) is not a number.
    #[error("`{text}` is not a valid {what} (column {column})")]
    BadNumber {
        /// Which field.
        what: &'static str,
        /// What was there (cut to 64 bytes).
        text: String,
        /// Where.
        column: usize,
    },
    /// Text after the last field.
    #[error("unexpected text after the last field at column {0}")]
    Trailing(usize),
}

/// Parses one line (a trailing `\r`/`\n` is ignored) in `format`.
pub fn parse<'a>(line: &'a [u8], format: &LogFormat) -> Result<AccessLogLine<'a>, LineError> {
    if line.len() > MAX_LINE + 2 {
        return Err(LineError::TooLong);
    }
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    if end > MAX_LINE {
        return Err(LineError::TooLong);
    }
    let text = std::str::from_utf8(&line[..end]).map_err(|_| LineError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(LineError::Empty);
    }
    match &format.layout {
        Layout::Pieces(f) => parse_pieces(text, &f.pieces, f.optional_from),
        Layout::Csv => parse_csv(text),
    }
}

/// The fields as found, before they are checked.
#[derive(Default)]
struct Found<'a> {
    client: Option<IpAddr>,
    ident: Option<&'a str>,
    user: Option<&'a str>,
    time: Option<Timestamp>,
    request: Option<&'a str>,
    method: Option<&'a str>,
    path: Option<&'a str>,
    query: Option<&'a str>,
    protocol: Option<&'a str>,
    status: Option<u16>,
    bytes: Option<u64>,
    referer: Option<Cow<'a, str>>,
    user_agent: Option<Cow<'a, str>>,
    host: Option<&'a str>,
}

impl<'a> Found<'a> {
    fn finish(self) -> Result<AccessLogLine<'a>, LineError> {
        let missing = |what: &str| LineError::Expected {
            expected: what.to_owned(),
            column: 1,
        };
        let client = self.client.ok_or_else(|| missing("a client address"))?;
        let time = self.time.ok_or_else(|| missing("a time"))?;
        let request = self.request.unwrap_or_default();
        Ok(AccessLogLine {
            client,
            ident: self.ident,
            user: self.user,
            time,
            request,
            method: self.method,
            path: self.path,
            query: self.query,
            protocol: self.protocol,
            status: self.status,
            bytes: self.bytes,
            referer: self.referer,
            user_agent: self.user_agent,
            host: self.host,
        })
    }

    fn set(&mut self, field: Field, value: &'a str, column: usize) -> Result<(), LineError> {
        match field {
            Field::RemoteAddr => {
                let addr = value
                    .strip_prefix('[')
                    .and_then(|v| v.strip_suffix(']'))
                    .unwrap_or(value);
                self.client = Some(addr.parse().map_err(|_| LineError::BadClient {
                    text: cut(value),
                    column,
                })?);
            }
            Field::Ident => self.ident = dash_none(value),
            Field::RemoteUser => self.user = dash_none(value),
            Field::TimeLocal => {
                self.time = Some(clf_time(value).ok_or_else(|| bad_time(value, column))?);
            }
            Field::TimeIso8601 => {
                self.time = Some(iso_time(value).ok_or_else(|| bad_time(value, column))?);
            }
            Field::Msec => {
                let secs = value.split('.').next().unwrap_or_default();
                let secs: i64 = secs.parse().map_err(|_| bad_time(value, column))?;
                self.time = Some(Timestamp::from_unix(secs));
            }
            Field::Request => {
                self.request = Some(value);
                if let Some((method, path, query, protocol)) = request_line(value) {
                    self.method = Some(method);
                    self.path = Some(path);
                    self.query = query;
                    self.protocol = protocol;
                }
            }
            Field::Method => self.method = dash_none(value),
            Field::RequestUri => {
                let (path, query) = split_target(value);
                self.path = Some(path);
                self.query = query;
            }
            Field::Uri => self.path = dash_none(value),
            Field::Args => self.query = dash_none(value).filter(|q| !q.is_empty()),
            Field::Protocol => self.protocol = dash_none(value),
            Field::Status => self.status = number(value, "status", column)?,
            Field::Bytes => self.bytes = number(value, "byte count", column)?,
            Field::Referer => self.referer = quoted_text(value),
            Field::UserAgent => self.user_agent = quoted_text(value),
            Field::Host => self.host = dash_none(value),
            Field::Ignored => {}
        }
        Ok(())
    }
}

fn parse_pieces<'a>(
    text: &'a str,
    pieces: &[Piece],
    optional_from: usize,
) -> Result<AccessLogLine<'a>, LineError> {
    let mut found = Found::default();
    let mut pos = 0usize;
    for (i, piece) in pieces.iter().enumerate() {
        if i >= optional_from && text[pos..].trim_end().is_empty() {
            pos = text.len();
            break;
        }
        match piece {
            Piece::Literal(lit) => {
                if !text[pos..].starts_with(lit.as_str()) {
                    // Point at the first character that differs.
                    let same = text[pos..]
                        .bytes()
                        .zip(lit.bytes())
                        .take_while(|(a, b)| a == b)
                        .count();
                    let same = (0..=same)
                        .rev()
                        .find(|&n| lit.is_char_boundary(n))
                        .unwrap_or(0);
                    return Err(LineError::Expected {
                        expected: format!("`{}`", &lit[same..]),
                        column: pos + same + 1,
                    });
                }
                pos += lit.len();
            }
            Piece::Field { field, quoted } => {
                let rest = &text[pos..];
                let len = if *quoted {
                    quoted_len(rest).ok_or(LineError::Unterminated(pos))?
                } else {
                    match pieces.get(i + 1) {
                        Some(Piece::Literal(next)) => {
                            let stop = next.chars().next().unwrap_or(' ');
                            rest.find(stop).unwrap_or(rest.len())
                        }
                        // The last field: unquoted fields hold no spaces.
                        _ => rest.find(' ').unwrap_or(rest.len()),
                    }
                };
                found.set(*field, &rest[..len], pos + 1)?;
                pos += len;
            }
        }
    }
    if !text[pos..].trim_end().is_empty() {
        return Err(LineError::Trailing(pos + 1));
    }
    found.finish()
}

/// The length of a quoted field's content: up to the first `"` not escaped by `\`.
fn quoted_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// `"remotehost","rfc931","authuser","date","request","status","bytes"`.
fn parse_csv(text: &str) -> Result<AccessLogLine<'_>, LineError> {
    let mut fields: [(&str, usize); 7] = [("", 0); 7];
    let mut pos = 0usize;
    for (n, slot) in fields.iter_mut().enumerate() {
        if n > 0 {
            if !text[pos..].starts_with(',') {
                return Err(LineError::Expected {
                    expected: "`,`".to_owned(),
                    column: pos + 1,
                });
            }
            pos += 1;
        }
        let rest = &text[pos..];
        if let Some(inner) = rest.strip_prefix('"') {
            // RFC 4180: a quote inside is doubled; fields here never need unescaping to count.
            let mut i = 0;
            let b = inner.as_bytes();
            loop {
                match b.get(i) {
                    None => return Err(LineError::Unterminated(pos + 1)),
                    Some(b'"') if b.get(i + 1) == Some(&b'"') => i += 2,
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            *slot = (&inner[..i], pos + 2);
            pos += i + 2;
        } else {
            let len = rest.find(',').unwrap_or(rest.len());
            *slot = (rest[..len].trim(), pos + 1);
            pos += len;
        }
    }
    if !text[pos..].trim_end().is_empty() {
        return Err(LineError::Trailing(pos + 1));
    }
    if fields[0].0 == "remotehost" {
        return Err(LineError::Header);
    }
    let mut found = Found::default();
    found.set(Field::RemoteAddr, fields[0].0, fields[0].1)?;
    found.set(Field::Ident, fields[1].0, fields[1].1)?;
    found.set(Field::RemoteUser, fields[2].0, fields[2].1)?;
    found.set(Field::Msec, fields[3].0, fields[3].1)?;
    found.set(Field::Request, fields[4].0, fields[4].1)?;
    found.set(Field::Status, fields[5].0, fields[5].1)?;
    found.set(Field::Bytes, fields[6].0, fields[6].1)?;
    found.finish()
}

fn dash_none(v: &str) -> Option<&str> {
    (v != "-" && !v.is_empty()).then_some(v)
}

fn number<T: std::str::FromStr>(
    v: &str,
    what: &'static str,
    column: usize,
) -> Result<Option<T>, LineError> {
    if v == "-" {
        return Ok(None);
    }
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LineError::BadNumber {
            what,
            text: cut(v),
            column,
        });
    }
    v.parse().map(Some).map_err(|_| LineError::BadNumber {
        what,
        text: cut(v),
        column,
    })
}

fn bad_time(v: &str, column: usize) -> LineError {
    LineError::BadTime {
        text: cut(v),
        column,
    }
}

/// `METHOD TARGET [PROTOCOL]` into (method, path, query, protocol); `None` for anything else
/// (TLS handshakes and other junk servers log).
fn request_line(req: &str) -> Option<(&str, &str, Option<&str>, Option<&str>)> {
    let mut parts = req.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let protocol = parts.next();
    if parts.next().is_some()
        || method.is_empty()
        || method.len() > 20
        || !method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
        || target.is_empty()
    {
        return None;
    }
    if protocol.is_some_and(|p| !p.starts_with("HTTP/")) {
        return None;
    }
    let (path, query) = split_target(target);
    Some((method, path, query, protocol))
}

/// `/a/b?x=1` into (`/a/b`, `Some("x=1")`); an absolute-form `http://host/a` gives `/a`.
fn split_target(target: &str) -> (&str, Option<&str>) {
    let target = match target.find("://") {
        Some(i) if target[..i].bytes().all(|b| b.is_ascii_alphabetic()) => {
            let after = &target[i + 3..];
            after.find(['/', '?']).map_or("/", |j| &after[j..])
        }
        _ => target,
    };
    match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    }
}

/// A quoted header value: `""` and `"-"` are none; `\"`, `\\` and `\xHH` are unescaped.
fn quoted_text(v: &str) -> Option<Cow<'_, str>> {
    if v.is_empty() || v == "-" {
        return None;
    }
    if !v.contains('\\') {
        return Some(Cow::Borrowed(v));
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'x' => {
                    let byte = b
                        .get(i + 2..i + 4)
                        .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    if let Some(byte) = byte {
                        out.push(byte);
                        i += 4;
                    } else {
                        out.push(b'\\');
                        i += 1;
                    }
                }
                c @ (b'"' | b'\\') => {
                    out.push(c);
                    i += 2;
                }
                _ => {
                    out.push(b'\\');
                    i += 1;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}

/// `31/Dec/2018:23:55:00 +0800`.
fn clf_time(v: &str) -> Option<Timestamp> {
    let b = v.as_bytes();
    if b.len() != 26
        || b[2] != b'/'
        || b[6] != b'/'
        || b[11] != b':'
        || b[14] != b':'
        || b[17] != b':'
        || b[20] != b' '
    {
        return None;
    }
    let day = digits(&b[0..2])?;
    let month = match &v[3..6] {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year = digits(&b[7..11])?;
    let (h, m, s) = (
        digits(&b[12..14])?,
        digits(&b[15..17])?,
        digits(&b[18..20])?,
    );
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let offset = sign * (digits(&b[22..24])? * 3600 + digits(&b[24..26])? * 60);
    civil(year, month, day, h, m, s).map(|t| Timestamp::from_unix(t - offset))
}

/// `2018-12-31T23:55:00+08:00` (or `Z`).
fn iso_time(v: &str) -> Option<Timestamp> {
    let b = v.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (h, m, s) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        rest = &rest[1 + n..];
    }
    let offset = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let o = digits(&[*h1, *h2])? * 3600 + digits(&[*m1, *m2])? * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    civil(year, month, day, h, m, s).map(|t| Timestamp::from_unix(t - offset))
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
}

/// Seconds since the epoch of a UTC civil time (Howard Hinnant's days-from-civil).
fn civil(year: i64, month: i64, day: i64, h: i64, m: i64, s: i64) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

fn cut(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests;
