//! Log formats: the named ones (common, combined, csv) and nginx `log_format` strings, compiled
//! once into a list of literals and fields that the parser walks.

use std::borrow::Cow;
use std::fmt;

/// What a field of a line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// `$remote_addr`: the client address.
    RemoteAddr,
    /// `$ident` (ours; nginx has none): the identd field of the common log format.
    Ident,
    /// `$remote_user`.
    RemoteUser,
    /// `$time_local`: `31/Dec/2018:23:55:00 +0800`.
    TimeLocal,
    /// `$time_iso8601`: `2018-12-31T23:55:00+08:00`.
    TimeIso8601,
    /// `$msec`: unix seconds with milliseconds.
    Msec,
    /// `$request`: `GET /path?query HTTP/1.1`.
    Request,
    /// `$request_method`.
    Method,
    /// `$request_uri`: path and query.
    RequestUri,
    /// `$uri`: path only.
    Uri,
    /// `$args` / `$query_string`.
    Args,
    /// `$server_protocol`.
    Protocol,
    /// `$status`.
    Status,
    /// `$body_bytes_sent` / `$bytes_sent`.
    Bytes,
    /// `$http_referer`.
    Referer,
    /// `$http_user_agent`.
    UserAgent,
    /// `$host` / `$http_host` / `$server_name`.
    Host,
    /// Any other variable: matched and ignored.
    Ignored,
}

impl Field {
    fn from_variable(name: &str) -> Field {
        match name {
            "remote_addr" => Field::RemoteAddr,
            "ident" => Field::Ident,
            "remote_user" => Field::RemoteUser,
            "time_local" => Field::TimeLocal,
            "time_iso8601" => Field::TimeIso8601,
            "msec" => Field::Msec,
            "request" => Field::Request,
            "request_method" => Field::Method,
            "request_uri" => Field::RequestUri,
            "uri" | "document_uri" => Field::Uri,
            "args" | "query_string" => Field::Args,
            "server_protocol" => Field::Protocol,
            "status" => Field::Status,
            "body_bytes_sent" | "bytes_sent" => Field::Bytes,
            "http_referer" => Field::Referer,
            "http_user_agent" => Field::UserAgent,
            "host" | "http_host" | "server_name" => Field::Host,
            _ => Field::Ignored,
        }
    }

    /// The field's name in error messages ("expected `[` before *the time*").
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Field::RemoteAddr => "the client address",
            Field::Ident => "the ident",
            Field::RemoteUser => "the user",
            Field::TimeLocal | Field::TimeIso8601 | Field::Msec => "the time",
            Field::Request => "the request",
            Field::Method => "the method",
            Field::RequestUri => "the request URI",
            Field::Uri => "the path",
            Field::Args => "the query string",
            Field::Protocol => "the protocol",
            Field::Status => "the status",
            Field::Bytes => "the byte count",
            Field::Referer => "the referer",
            Field::UserAgent => "the user agent",
            Field::Host => "the host",
            Field::Ignored => "an ignored field",
        }
    }

    fn is_time(self) -> bool {
        matches!(self, Field::TimeLocal | Field::TimeIso8601 | Field::Msec)
    }
}

/// Where a field's text ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// At the next `"` not escaped by `\`: the field sits between quotes and may hold spaces.
    Quote,
    /// At the next occurrence of the following literal's first character (or the line's end).
    Char(char),
    /// At the end of the line (the format's last piece), trailing whitespace left out.
    Line,
}

/// One piece of a compiled format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Text that must appear as is. Borrowed for the built-in formats, so they need no setup.
    Literal(Cow<'static, str>),
    /// A field and where it ends.
    Field { field: Field, end: End },
}

/// A compiled nginx `log_format` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomFormat {
    pieces: Vec<Piece>,
}

/// Why a format string cannot be used. Columns are 1-based character positions in the spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// A `$` not followed by a variable name.
    #[error("`$` at column {0} is not followed by a variable name")]
    EmptyVariable(usize),
    /// `${name` without its `}`.
    #[error("`${{` at column {0} has no closing `}}`")]
    UnclosedBrace(usize),
    /// Two variables with nothing between them cannot be told apart.
    #[error("the variable at column {0} follows another with no text between them")]
    Adjacent(usize),
    /// Without the client address a line cannot be counted.
    #[error("the format has no client address: add $remote_addr")]
    NoClient,
    /// Without the time a line cannot be placed in a window.
    #[error("the format has no time: add $time_local, $time_iso8601 or $msec")]
    NoTime,
    /// Neither a known name nor a format string.
    #[error(
        "`{0}` is not a log format: use common, combined, csv, \
         or an nginx log_format string with $variables"
    )]
    Unknown(String),
}

impl CustomFormat {
    /// Compiles an nginx `log_format` string, e.g.
    /// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent`.
    ///
    /// Variables are `$name` or `${name}`; the text between them must appear in lines as is.
    /// A field ends at the next literal character of the format; a field between double quotes
    /// ends at the next `"` not escaped by `\`; the last field runs to the end of the line.
    pub fn parse(spec: &str) -> Result<CustomFormat, FormatError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = spec.char_indices().peekable();
        // Column (in characters) of the current char, for errors.
        let column = |at: usize| spec[..at].chars().count() + 1;
        while let Some((at, ch)) = chars.next() {
            if ch != '$' {
                literal.push(ch);
                continue;
            }
            let name = if chars.next_if(|&(_, c)| c == '{').is_some() {
                let start = at + 2;
                let end = spec[start..]
                    .find('}')
                    .ok_or_else(|| FormatError::UnclosedBrace(column(at)))?;
                while chars.next_if(|&(i, _)| i <= start + end).is_some() {}
                &spec[start..start + end]
            } else {
                let start = at + 1;
                let mut end = start;
                while let Some((i, c)) =
                    chars.next_if(|&(_, c)| c.is_ascii_alphanumeric() || c == '_')
                {
                    end = i + c.len_utf8();
                }
                &spec[start..end]
            };
            if name.is_empty() {
                return Err(FormatError::EmptyVariable(column(at)));
            }
            if literal.is_empty() && matches!(pieces.last(), Some(Piece::Field { .. })) {
                return Err(FormatError::Adjacent(column(at)));
            }
            if !literal.is_empty() {
                pieces.push(Piece::Literal(Cow::Owned(std::mem::take(&mut literal))));
            }
            pieces.push(Piece::Field {
                field: Field::from_variable(name),
                end: End::Line,
            });
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(Cow::Owned(literal)));
        }
        let has = |f: fn(Field) -> bool| {
            pieces
                .iter()
                .any(|p| matches!(p, Piece::Field { field, .. } if f(*field)))
        };
        if !has(|f| f == Field::RemoteAddr) {
            return Err(FormatError::NoClient);
        }
        if !has(Field::is_time) {
            return Err(FormatError::NoTime);
        }
        set_ends(&mut pieces);
        Ok(CustomFormat { pieces })
    }

    pub(crate) fn pieces(&self) -> &[Piece] {
        &self.pieces
    }
}

/// Decides where each field ends from the literal after it, and whether it is between quotes
/// (an odd number of `"` in the literals before it).
fn set_ends(pieces: &mut [Piece]) {
    let mut in_quotes = false;
    for i in 0..pieces.len() {
        let next = match pieces.get(i + 1) {
            Some(Piece::Literal(l)) => l.chars().next(),
            _ => None,
        };
        match &mut pieces[i] {
            Piece::Literal(l) => in_quotes ^= l.bytes().filter(|&b| b == b'"').count() % 2 == 1,
            Piece::Field { end, .. } => {
                *end = match next {
                    Some('"') if in_quotes => End::Quote,
                    Some(c) => End::Char(c),
                    None => End::Line,
                };
            }
        }
    }
}

/// How lines are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// The common log format (CLF): `host ident user [time] "request" status bytes`.
    Common,
    /// Apache's combined log format, which is also nginx's default `combined`: common plus
    /// `"referer" "user agent"`. Lines without those two (common-format lines) are read too.
    Combined,
    /// An nginx `log_format` string.
    Custom(CustomFormat),
    /// The CSV export `"remotehost","rfc931","authuser","date","request","status","bytes"`,
    /// `date` in unix seconds; its header line is reported as [`crate::LineError::Header`].
    Csv,
}

/// How the parser walks a format.
pub(crate) enum Layout<'f> {
    /// Literals and fields; pieces from `optional_from` on may be missing at the line's end.
    Pieces {
        pieces: &'f [Piece],
        optional_from: usize,
    },
    /// Seven comma-separated, mostly quoted, fields.
    Csv,
}

impl LogFormat {
    /// A format by name: `common` (or `clf`), `combined` (or `nginx`, `apache`), `csv`; any
    /// case.
    pub fn from_name(name: &str) -> Option<LogFormat> {
        let name = name.trim();
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("common") || is("clf") {
            Some(LogFormat::Common)
        } else if is("combined") || is("nginx") || is("apache") {
            Some(LogFormat::Combined)
        } else if is("csv") {
            Some(LogFormat::Csv)
        } else {
            None
        }
    }

    /// A format from a configuration value: a name, or a format string with `$variables`.
    pub fn from_setting(text: &str) -> Result<LogFormat, FormatError> {
        if let Some(f) = LogFormat::from_name(text) {
            return Ok(f);
        }
        if text.contains('$') {
            return CustomFormat::parse(text).map(LogFormat::Custom);
        }
        Err(FormatError::Unknown(text.to_owned()))
    }

    /// The format's name (`custom` for a format string).
    pub fn name(&self) -> &'static str {
        match self {
            LogFormat::Common => "common",
            LogFormat::Combined => "combined",
            LogFormat::Custom(_) => "custom",
            LogFormat::Csv => "csv",
        }
    }

    pub(crate) fn layout(&self) -> Layout<'_> {
        match self {
            LogFormat::Common => Layout::Pieces {
                pieces: COMMON,
                optional_from: COMMON.len(),
            },
            LogFormat::Combined => Layout::Pieces {
                pieces: COMBINED,
                optional_from: COMMON.len(),
            },
            LogFormat::Custom(f) => Layout::Pieces {
                pieces: f.pieces(),
                optional_from: f.pieces().len(),
            },
            LogFormat::Csv => Layout::Csv,
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The common log format as a format string (`$ident` is ours: nginx has no identd field).
#[cfg(test)]
pub(crate) const COMMON_SPEC: &str =
    "$remote_addr $ident $remote_user [$time_local] \"$request\" $status $body_bytes_sent";

const fn lit(s: &'static str) -> Piece {
    Piece::Literal(Cow::Borrowed(s))
}

const fn field(field: Field, end: End) -> Piece {
    Piece::Field { field, end }
}

/// [`COMMON_SPEC`] compiled, except that the byte count ends at a space (not the line's end),
/// so that a combined line read as common says "unexpected text" instead of "bad number".
static COMMON: &[Piece] = &[
    field(Field::RemoteAddr, End::Char(' ')),
    lit(" "),
    field(Field::Ident, End::Char(' ')),
    lit(" "),
    field(Field::RemoteUser, End::Char(' ')),
    lit(" ["),
    field(Field::TimeLocal, End::Char(']')),
    lit("] \""),
    field(Field::Request, End::Quote),
    lit("\" "),
    field(Field::Status, End::Char(' ')),
    lit(" "),
    field(Field::Bytes, End::Char(' ')),
];

/// `COMMON_SPEC "$http_referer" "$http_user_agent"` compiled: [`COMMON`] and three more
/// pieces.
static COMBINED: &[Piece] = &[
    field(Field::RemoteAddr, End::Char(' ')),
    lit(" "),
    field(Field::Ident, End::Char(' ')),
    lit(" "),
    field(Field::RemoteUser, End::Char(' ')),
    lit(" ["),
    field(Field::TimeLocal, End::Char(']')),
    lit("] \""),
    field(Field::Request, End::Quote),
    lit("\" "),
    field(Field::Status, End::Char(' ')),
    lit(" "),
    field(Field::Bytes, End::Char(' ')),
    lit(" \""),
    field(Field::Referer, End::Quote),
    lit("\" \""),
    field(Field::UserAgent, End::Quote),
    lit("\""),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_tables_are_their_format_strings_compiled() {
        let common = CustomFormat::parse(COMMON_SPEC).unwrap();
        let mut expected = COMMON.to_vec();
        // The one deliberate difference: see `COMMON`.
        expected[12] = field(Field::Bytes, End::Line);
        assert_eq!(common.pieces(), expected);
        let combined = CustomFormat::parse(&format!(
            "{COMMON_SPEC} \"$http_referer\" \"$http_user_agent\""
        ))
        .unwrap();
        assert_eq!(combined.pieces(), COMBINED);
        assert_eq!(COMBINED[..COMMON.len()], *COMMON);
    }

    #[test]
    fn fields_between_quotes_end_at_a_quote_others_at_the_next_literal() {
        let f = CustomFormat::parse(
            r#"$remote_addr [$msec] "$request_method $request_uri $server_protocol" "$http_user_agent" $request_time"#,
        )
        .unwrap();
        let ends: Vec<End> = f
            .pieces()
            .iter()
            .filter_map(|p| match p {
                Piece::Field { end, .. } => Some(*end),
                Piece::Literal(_) => None,
            })
            .collect();
        assert_eq!(
            ends,
            [
                End::Char(' '),
                End::Char(']'),
                End::Char(' '),
                End::Char(' '),
                End::Quote,
                End::Quote,
                End::Line
            ]
        );
    }

    #[test]
    fn bad_format_strings_say_where() {
        let err = |spec: &str| CustomFormat::parse(spec).unwrap_err();
        assert_eq!(err("$remote_addr$status"), FormatError::Adjacent(13));
        assert_eq!(err("$remote_addr $ x"), FormatError::EmptyVariable(14));
        assert_eq!(
            err("é $remote_addr ${time_local"),
            FormatError::UnclosedBrace(16)
        );
        assert_eq!(err("$remote_addr ${}"), FormatError::EmptyVariable(14));
        assert_eq!(err("$remote_addr $status"), FormatError::NoTime);
        assert_eq!(
            err("[$time_local] $binary_remote_addr"),
            FormatError::NoClient
        );
        assert_eq!(err(""), FormatError::NoClient);
        assert_eq!(
            err("$remote_addr$status").to_string(),
            "the variable at column 13 follows another with no text between them"
        );
        assert_eq!(
            err("$remote_addr ${time_local").to_string(),
            "`${` at column 14 has no closing `}`"
        );
        assert!(matches!(
            LogFormat::from_setting("apache2"),
            Err(FormatError::Unknown(_))
        ));
    }

    #[test]
    fn braces_and_unicode_literals_compile() {
        let f = CustomFormat::parse("${remote_addr}→${msec}ms").unwrap();
        assert_eq!(
            f.pieces(),
            [
                field(Field::RemoteAddr, End::Char('→')),
                Piece::Literal(Cow::Owned("→".into())),
                field(Field::Msec, End::Char('m')),
                Piece::Literal(Cow::Owned("ms".into())),
            ]
        );
    }

    #[test]
    fn names_and_settings() {
        for (name, f) in [
            ("common", LogFormat::Common),
            ("CLF", LogFormat::Common),
            (" combined ", LogFormat::Combined),
            ("nginx", LogFormat::Combined),
            ("apache", LogFormat::Combined),
            ("csv", LogFormat::Csv),
        ] {
            assert_eq!(LogFormat::from_name(name), Some(f.clone()), "{name}");
            assert_eq!(LogFormat::from_setting(name), Ok(f));
        }
        assert_eq!(LogFormat::from_name("w3c"), None);
        let custom = LogFormat::from_setting("$remote_addr [$time_local]").unwrap();
        assert_eq!(custom.to_string(), "custom");
        assert_eq!(LogFormat::Combined.to_string(), "combined");
    }
}
