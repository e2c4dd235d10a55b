//! The access-log line parser: pure, total (never panics), bounded, allocation-free unless a
//! quoted field needs unescaping.

use std::borrow::Cow;

use banhammer_core::Timestamp;

use crate::client::Client;
use crate::error::{LineError, Near, Snippet};
use crate::format::{End, Field, Layout, LogFormat, Piece};
use crate::time;

/// The longest line accepted, in bytes (not counting a trailing `\r\n`).
pub const MAX_LINE: usize = 16 * 1024;

/// One parsed access-log line, borrowing from the line's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogLine<'a> {
    /// The client: an address (an IPv4-mapped IPv6 address is read as the IPv4 address), or
    /// a host name where the server logged names.
    pub client: Client<'a>,
    /// The identd field (`-` is `None`).
    pub ident: Option<&'a str>,
    /// The authenticated user (`-` is `None`).
    pub user: Option<&'a str>,
    /// When the request was logged, its offset applied.
    pub time: Timestamp,
    /// The raw request line (`GET /a?b HTTP/1.1`), or whatever the server logged instead;
    /// empty when the format has no `$request`.
    pub request: &'a str,
    /// The method, if the request line is `METHOD TARGET [PROTOCOL]`.
    pub method: Option<&'a str>,
    /// The path, without the query string (`/login` also for `http://host/login`).
    pub path: Option<&'a str>,
    /// The query string, without its `?` (`None` when absent or empty).
    pub query: Option<&'a str>,
    /// The protocol, e.g. `HTTP/1.1`.
    pub protocol: Option<&'a str>,
    /// The response status.
    pub status: Option<u16>,
    /// The response's size in bytes (`-` is `None`).
    pub bytes: Option<u64>,
    /// The referer (`""` and `"-"` are `None`), unescaped; borrowed unless it had escapes.
    pub referer: Option<Cow<'a, str>>,
    /// The user agent (`""` and `"-"` are `None`), unescaped; borrowed unless it had escapes.
    pub user_agent: Option<Cow<'a, str>>,
    /// The virtual host, if the format logs it.
    pub host: Option<&'a str>,
}

/// Parses one line in `format`. A trailing `\n` or `\r\n` is ignored.
pub fn parse<'a>(line: &'a [u8], format: &LogFormat) -> Result<AccessLogLine<'a>, LineError> {
    // Bound the work before looking at the bytes: at most two line-end bytes are dropped.
    if line.len() > MAX_LINE + 2 {
        return Err(LineError::TooLong);
    }
    let mut line = line;
    while let [rest @ .., b'\n' | b'\r'] = line {
        line = rest;
    }
    if line.len() > MAX_LINE {
        return Err(LineError::TooLong);
    }
    let text = std::str::from_utf8(line).map_err(|e| LineError::NotUtf8 {
        column: e.valid_up_to() + 1,
    })?;
    if text.bytes().all(|b| b.is_ascii_whitespace()) {
        return Err(LineError::Empty);
    }
    let parsed = match format.layout() {
        Layout::Pieces {
            pieces,
            optional_from,
        } => parse_pieces(text, pieces, optional_from),
        Layout::Csv => parse_csv(text),
    };
    // Checked only once the line failed, so that a format starting with `#` still reads.
    match parsed {
        Err(e) if e != LineError::Header && text.starts_with('#') => Err(LineError::Comment),
        other => other,
    }
}

/// Whether `line` is the header of the CSV export
/// (`"remotehost","rfc931",...`, quoted or not).
pub(crate) fn is_csv_header(line: &[u8]) -> bool {
    line.starts_with(b"\"remotehost\"") || line.starts_with(b"remotehost,")
}

/// The fields as found, before the required ones are checked.
#[derive(Default)]
struct Found<'a> {
    client: Option<Client<'a>>,
    ident: Option<&'a str>,
    user: Option<&'a str>,
    time: Option<Timestamp>,
    request: &'a str,
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
    /// The line, if it had a client and a time. Formats are checked to have both, so a line
    /// lacks one only if the format's pieces were cut short.
    fn finish(self, end: usize) -> Result<AccessLogLine<'a>, LineError> {
        let missing = |what| LineError::Expected {
            expected: Snippet::new(what),
            place: Near::Nowhere,
            column: end + 1,
        };
        Ok(AccessLogLine {
            client: self.client.ok_or_else(|| missing("$remote_addr"))?,
            ident: self.ident,
            user: self.user,
            time: self.time.ok_or_else(|| missing("$time_local"))?,
            request: self.request,
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

    /// Reads `value` (found at 1-based `column`) as `field`.
    fn set(&mut self, field: Field, value: &'a str, column: usize) -> Result<(), LineError> {
        let bad_time = || LineError::BadTime {
            text: Snippet::new(value),
            column,
        };
        match field {
            Field::RemoteAddr => {
                self.client = Some(Client::parse(value).ok_or_else(|| LineError::BadClient {
                    text: Snippet::new(value),
                    column,
                })?);
            }
            Field::Ident => self.ident = dash_none(value),
            Field::RemoteUser => self.user = dash_none(value),
            Field::TimeLocal => self.time = Some(time::clf(value).ok_or_else(bad_time)?),
            Field::TimeIso8601 => self.time = Some(time::iso8601(value).ok_or_else(bad_time)?),
            Field::Msec => self.time = Some(time::msec(value).ok_or_else(bad_time)?),
            Field::Request => {
                self.request = value;
                if let Some((method, target, protocol)) = request_line(value) {
                    let (path, query) = split_target(target);
                    self.method = Some(method);
                    self.path = Some(path);
                    self.query = query;
                    self.protocol = protocol;
                }
            }
            Field::Method => self.method = dash_none(value),
            Field::RequestUri => {
                if let Some(target) = dash_none(value) {
                    let (path, query) = split_target(target);
                    self.path = Some(path);
                    self.query = query;
                }
            }
            Field::Uri => self.path = dash_none(value),
            Field::Args => self.query = dash_none(value),
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

/// Walks a format's pieces along the line.
fn parse_pieces<'a>(
    text: &'a str,
    pieces: &[Piece],
    optional_from: usize,
) -> Result<AccessLogLine<'a>, LineError> {
    let mut found = Found::default();
    let mut pos = 0;
    for (i, piece) in pieces.iter().enumerate() {
        let rest = &text[pos..];
        if i == optional_from && rest.trim_end().is_empty() {
            pos = text.len();
            break;
        }
        match piece {
            Piece::Literal(lit) => {
                if !starts_with(rest.as_bytes(), lit.as_bytes()) {
                    return Err(literal_missing(lit, rest, pos, pieces, i));
                }
                pos += lit.len();
            }
            Piece::Field { field, end } => {
                let len = match end {
                    End::Quote => quoted_len(rest).ok_or_else(|| LineError::Unterminated {
                        field: field.describe(),
                        column: pos,
                    })?,
                    End::Char(c) => match u8::try_from(*c) {
                        Ok(b) if b.is_ascii() => find_byte(rest.as_bytes(), b),
                        _ => rest.find(*c),
                    }
                    .unwrap_or(rest.len()),
                    End::Line => rest.trim_end().len(),
                };
                found.set(*field, &rest[..len], pos + 1)?;
                pos += len;
            }
        }
    }
    let rest = &text[pos..];
    let trailing = rest.trim_start();
    if !trailing.trim_end().is_empty() {
        return Err(LineError::Trailing {
            text: Snippet::new(trailing),
            column: pos + (rest.len() - trailing.len()) + 1,
        });
    }
    found.finish(text.len())
}

/// The error for literal text of the format (`pieces[i]`) that is not at `pos`: it names the
/// first character that differs and the field the literal comes before (or after).
fn literal_missing(lit: &str, rest: &str, pos: usize, pieces: &[Piece], i: usize) -> LineError {
    let same = rest
        .bytes()
        .zip(lit.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let same = (0..=same)
        .rev()
        .find(|&n| lit.is_char_boundary(n))
        .unwrap_or(0);
    let field = |p: Option<&Piece>| match p {
        Some(Piece::Field { field, .. }) => Some(field.describe()),
        _ => None,
    };
    let place = match (
        field(pieces.get(i + 1)),
        field(i.checked_sub(1).map(|j| &pieces[j])),
    ) {
        (Some(next), _) => Near::Before(next),
        (None, Some(prev)) => Near::After(prev),
        (None, None) => Near::Nowhere,
    };
    LineError::Expected {
        expected: Snippet::new(&lit[same..]),
        place,
        column: pos + same + 1,
    }
}

/// The length of a quoted field's content: up to the first `"` not escaped by `\` (preceded
/// by an odd number of backslashes). `\xHH` escapes hold neither character.
fn quoted_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut from = 0;
    loop {
        let q = from + find_byte(&b[from..], b'"')?;
        let slashes = b[from..q].iter().rev().take_while(|&&c| c == b'\\').count();
        if slashes % 2 == 0 {
            return Some(q);
        }
        from = q + 1;
    }
}

/// `hay.starts_with(prefix)` without a call to `memcmp`: literals are a few bytes long.
fn starts_with(hay: &[u8], prefix: &[u8]) -> bool {
    hay.len() >= prefix.len() && hay.iter().zip(prefix).all(|(a, b)| a == b)
}

/// The index of the first `needle` in `hay`, eight bytes at a time (SWAR: a zero byte in
/// `word ^ pattern` is a match). Fields are short, so this beats a call to `memchr`.
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES * u64::from(needle);
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        // The lowest set bit marks the first zero byte exactly (borrows only run upwards).
        let zero = x.wrapping_sub(ONES) & !x & HIGHS;
        if zero != 0 {
            return Some(base + (zero.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| base + i)
}

/// `"remotehost","rfc931","authuser","date","request","status","bytes"`.
fn parse_csv(text: &str) -> Result<AccessLogLine<'_>, LineError> {
    const NAMES: [&str; 7] = [
        "the client address",
        "the ident",
        "the user",
        "the time",
        "the request",
        "the status",
        "the byte count",
    ];
    if is_csv_header(text.as_bytes()) {
        return Err(LineError::Header);
    }
    let mut fields: [(&str, usize); 7] = [("", 0); 7];
    let mut pos = 0;
    for (n, slot) in fields.iter_mut().enumerate() {
        if n > 0 {
            if !text[pos..].starts_with(',') {
                return Err(LineError::Expected {
                    expected: Snippet::new(","),
                    place: Near::Before(NAMES[n]),
                    column: pos + 1,
                });
            }
            pos += 1;
        }
        let rest = &text[pos..];
        if let Some(inner) = rest.strip_prefix('"') {
            // RFC 4180: a quote inside is doubled. The text is kept as written.
            let b = inner.as_bytes();
            let mut i = 0;
            loop {
                match b.get(i) {
                    None => {
                        return Err(LineError::Unterminated {
                            field: NAMES[n],
                            column: pos + 1,
                        })
                    }
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
    let rest = &text[pos..];
    if !rest.trim().is_empty() {
        return Err(LineError::Trailing {
            text: Snippet::new(rest),
            column: pos + 1,
        });
    }
    let mut found = Found::default();
    let kinds = [
        Field::RemoteAddr,
        Field::Ident,
        Field::RemoteUser,
        Field::Msec,
        Field::Request,
        Field::Status,
        Field::Bytes,
    ];
    for (kind, (value, column)) in kinds.into_iter().zip(fields) {
        found.set(kind, value, column)?;
    }
    found.finish(text.len())
}

fn dash_none(v: &str) -> Option<&str> {
    (v != "-" && !v.is_empty()).then_some(v)
}

/// A decimal number (`-` is `None`) that fits `T`.
fn number<T: TryFrom<u64>>(
    v: &str,
    what: &'static str,
    column: usize,
) -> Result<Option<T>, LineError> {
    if v == "-" {
        return Ok(None);
    }
    let bad = || LineError::BadNumber {
        what,
        text: Snippet::new(v),
        column,
    };
    if v.is_empty() || v.len() > 20 {
        return Err(bad());
    }
    let mut n: u64 = 0;
    for b in v.bytes() {
        if !b.is_ascii_digit() {
            return Err(bad());
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or_else(bad)?;
    }
    T::try_from(n).map(Some).map_err(|_| bad())
}

/// `METHOD SP TARGET [SP PROTOCOL]` into (method, target, protocol); `None` for anything else
/// (TLS handshakes and other junk that servers log, `-`). A method is 1 to 32 of `A-Z`, `_`,
/// `-`; a protocol starts with `HTTP/`.
fn request_line(req: &str) -> Option<(&str, &str, Option<&str>)> {
    let space = find_byte(req.as_bytes(), b' ')?;
    let (method, rest) = (&req[..space], &req[space + 1..]);
    let (target, protocol) = match find_byte(rest.as_bytes(), b' ') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let method_ok = (1..=32).contains(&method.len())
        && method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-');
    let protocol_ok = protocol.is_none_or(|p| {
        p.len() <= 16
            && starts_with(p.as_bytes(), b"HTTP/")
            && find_byte(p.as_bytes(), b' ').is_none()
    });
    (method_ok && protocol_ok && !target.is_empty()).then_some((method, target, protocol))
}

/// `/a/b?x=1` into (`/a/b`, `Some("x=1")`); the absolute form `http://host/a?x` gives the same
/// path and query as `/a?x`, as nginx's `$uri` does. An empty query is `None`.
fn split_target(target: &str) -> (&str, Option<&str>) {
    let target = if target.starts_with('/') {
        target
    } else {
        match target.find("://") {
            Some(i) if i > 0 && target[..i].bytes().all(|b| b.is_ascii_alphabetic()) => {
                let after = &target[i + 3..];
                after.find(['/', '?']).map_or("/", |j| &after[j..])
            }
            _ => target,
        }
    };
    match find_byte(target.as_bytes(), b'?') {
        Some(i) => {
            let (p, q) = (&target[..i], &target[i + 1..]);
            (
                if p.is_empty() { "/" } else { p },
                (!q.is_empty()).then_some(q),
            )
        }
        None => (target, None),
    }
}

/// A quoted header value: `""` and `"-"` are none; `\"`, `\\` and `\xHH` are unescaped (a
/// backslash before anything else is kept), and bytes that do not make UTF-8 become U+FFFD.
fn quoted_text(v: &str) -> Option<Cow<'_, str>> {
    if v.is_empty() || v == "-" {
        return None;
    }
    if find_byte(v.as_bytes(), b'\\').is_none() {
        return Some(Cow::Borrowed(v));
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = match (b[i], b.get(i + 1)) {
            (b'\\', Some(&c @ (b'"' | b'\\'))) => Some((c, 2)),
            (b'\\', Some(b'x')) => b
                .get(i + 2..i + 4)
                .and_then(|h| Some((hex(h[0])? << 4) | hex(h[1])?))
                .map(|byte| (byte, 4)),
            _ => None,
        };
        let (byte, width) = escaped.unwrap_or((b[i], 1));
        out.push(byte);
        i += width;
    }
    Some(match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    })
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
