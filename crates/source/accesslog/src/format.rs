//! Log formats: the named ones (common, combined, csv) and nginx-style `log_format` strings,
//! compiled once into a list of literals and fields that the parser walks.

use std::fmt;

/// What a field of a line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// `$remote_addr`: the client address.
    RemoteAddr,
    /// The identd field of the common log format (`-` nearly always).
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
            "remote_addr" | "binary_remote_addr" => Field::RemoteAddr,
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
}

/// One piece of a compiled format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Text that must appear as is.
    Literal(String),
    /// A field; `quoted` fields end at an unescaped `"` and may contain spaces.
    Field { field: Field, quoted: bool },
}

/// A compiled nginx-style format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomFormat {
    pub(crate) pieces: Vec<Piece>,
    /// Pieces from this index on may be missing at the end of a line (combined's referer and
    /// user agent, so that common-format lines read under `combined` too).
    pub(crate) optional_from: usize,
}

/// A format string that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// A `$` not followed by a variable name.
    #[error("`$` at column {0} is not followed by a variable name")]
    EmptyVariable(usize),
    /// Two variables with nothing between them cannot be told apart.
    #[error("variables at column {0} follow each other with no separator")]
    Adjacent(usize),
    /// Without the client address or the time a line cannot be counted.
    #[error("the format needs $remote_addr and a time ($time_local, $time_iso8601 or $msec)")]
    MissingField,
    /// Neither a known name nor a format string.
    #[error("`{0}` is not a log format: use common, combined, csv, or an nginx log_format string with $variables")]
    Unknown(String),
}

impl CustomFormat {
    /// Compiles an nginx `log_format` string, e.g.
    /// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent`.
    pub fn parse(spec: &str) -> Result<CustomFormat, FormatError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let bytes = spec.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                let ch = spec[i..].chars().next().unwrap_or('$');
                literal.push(ch);
                i += ch.len_utf8();
                continue;
            }
            let start = i + 1;
            // `${name}` or `$name`.
            let (name, next) = if bytes.get(start) == Some(&b'{') {
                let end = spec[start..].find('}').map_or(bytes.len(), |e| start + e);
                (
                    &spec[start + 1..end.min(bytes.len())],
                    (end + 1).min(bytes.len()),
                )
            } else {
                let len = spec[start..]
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    .count();
                (&spec[start..start + len], start + len)
            };
            if name.is_empty() {
                return Err(FormatError::EmptyVariable(i + 1));
            }
            if literal.is_empty() && matches!(pieces.last(), Some(Piece::Field { .. })) {
                return Err(FormatError::Adjacent(i + 1));
            }
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Field {
                field: Field::from_variable(name),
                quoted: false,
            });
            i = next;
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        // A field is quoted when it sits between quotes: it may hold spaces and escapes.
        for i in 0..pieces.len() {
            let opens = i > 0 && matches!(&pieces[i - 1], Piece::Literal(l) if l.ends_with('"'));
            let closes = matches!(pieces.get(i + 1), Some(Piece::Literal(l)) if l.starts_with('"'));
            if let Piece::Field { quoted, .. } = &mut pieces[i] {
                *quoted = opens && closes;
            }
        }
        let has = |f: Field| {
            pieces
                .iter()
                .any(|p| matches!(p, Piece::Field { field, .. } if *field == f))
        };
        let has_time = has(Field::TimeLocal) || has(Field::TimeIso8601) || has(Field::Msec);
        if !has(Field::RemoteAddr) || !has_time {
            return Err(FormatError::MissingField);
        }
        let optional_from = pieces.len();
        Ok(CustomFormat {
            pieces,
            optional_from,
        })
    }
}

/// How lines are laid out: a named format or a compiled format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    name: &'static str,
    pub(crate) layout: Layout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    Pieces(CustomFormat),
    /// `"remotehost","rfc931","authuser","date","request","status","bytes"`, date in unix
    /// seconds.
    Csv,
}

const COMMON: &str =
    "$remote_addr $ident $remote_user [$time_local] \"$request\" $status $body_bytes_sent";

impl LogFormat {
    /// The common log format: `host ident user [time] "request" status bytes`.
    pub fn common() -> Self {
        LogFormat {
            name: "common",
            layout: Layout::Pieces(builtin(COMMON, None)),
        }
    }

    /// Apache's combined log format, which is also nginx's default `combined`: common plus
    /// `"referer" "user agent"` (lines without them are accepted too).
    pub fn combined() -> Self {
        let spec = format!("{COMMON} \"$http_referer\" \"$http_user_agent\"");
        let common_len = builtin(COMMON, None).pieces.len();
        LogFormat {
            name: "combined",
            layout: Layout::Pieces(builtin(&spec, Some(common_len))),
        }
    }

    /// The CSV export `"remotehost","rfc931","authuser","date","request","status","bytes"`
    /// with `date` in unix seconds; its header line is reported as [`crate::LineError::Header`].
    pub fn csv() -> Self {
        LogFormat {
            name: "csv",
            layout: Layout::Csv,
        }
    }

    /// An nginx-style `log_format` string.
    pub fn custom(spec: &str) -> Result<Self, FormatError> {
        Ok(LogFormat {
            name: "custom",
            layout: Layout::Pieces(CustomFormat::parse(spec)?),
        })
    }

    /// A format by name: `common` (or `clf`), `combined` (or `nginx`, `apache`), `csv`.
    pub fn from_name(name: &str) -> Option<LogFormat> {
        match name.trim().to_ascii_lowercase().as_str() {
            "common" | "clf" => Some(LogFormat::common()),
            "combined" | "nginx" | "apache" => Some(LogFormat::combined()),
            "csv" => Some(LogFormat::csv()),
            _ => None,
        }
    }

    /// A format from a configuration value: a name, or a format string with `$variables`.
    pub fn from_setting(text: &str) -> Result<LogFormat, FormatError> {
        if let Some(f) = LogFormat::from_name(text) {
            return Ok(f);
        }
        if text.contains('$') {
            return LogFormat::custom(text);
        }
        Err(FormatError::Unknown(text.to_owned()))
    }

    /// The format's name (`custom` for a format string).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

fn builtin(spec: &str, optional_from: Option<usize>) -> CustomFormat {
    // The identd field has no nginx variable; `$ident` is ours.
    let mut f = CustomFormat::parse(spec).unwrap_or(CustomFormat {
        pieces: Vec::new(),
        optional_from: 0,
    });
    for p in &mut f.pieces {
        if let Piece::Field {
            field: Field::Ignored,
            ..
        } = p
        {
            *p = Piece::Field {
                field: Field::Ident,
                quoted: false,
            };
        }
    }
    f.optional_from = optional_from.unwrap_or(f.pieces.len());
    f
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}
