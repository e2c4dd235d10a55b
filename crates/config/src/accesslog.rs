//! `[accesslog]` and `[[accesslog.match]]`: how log lines become events.

use std::net::IpAddr;

use globset::{Glob, GlobMatcher};
use ipnet::IpNet;
use regex::Regex;
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use banhammer_core::Seconds;

use crate::clients::{canonical_net, nets_contain, parse_net, ClientTokens};
use crate::context::Cx;
use crate::error::ConfigError;
use crate::raw::RawDuration;

/// `[accesslog]`: reading access-log lines.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccessLog {
    /// `"common"`, `"combined"` (Apache's and nginx's default), `"csv"`, or an nginx
    /// `log_format` string such as `'$remote_addr - $remote_user [$time_local] "$request" ...'`.
    /// Default `"combined"`.
    #[serde(default)]
    format: Option<Spanned<String>>,
    /// The metric every line counts as. Default `"request"`.
    #[serde(default)]
    request_metric: Option<Spanned<String>>,
    /// Count IPv4 clients by this prefix length (32: each address). Default 32.
    #[serde(default)]
    ipv4_prefix: Option<Spanned<u8>>,
    /// Count IPv6 clients by this prefix length (an IPv6 host usually owns a /64). Default 64.
    #[serde(default)]
    ipv6_prefix: Option<Spanned<u8>>,
    /// Clients never counted (an allowlist): addresses or CIDR ranges.
    #[serde(default)]
    ignore: Vec<Spanned<String>>,
    /// In event time (`replay`, `watch --clock event`, `monitor --replay`), how far behind the
    /// newest line a line may be logged and still be counted in order. Default 60 s.
    #[serde(default)]
    max_delay: Option<Spanned<RawDuration>>,
    /// How many lines may wait to be put in order; past it the oldest are counted early.
    /// Default 1,000,000.
    #[serde(default)]
    max_buffered_lines: Option<Spanned<u64>>,
}

/// One `[[accesslog.match]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatcher {
    /// The metric a matching line also counts as. Required.
    metric: Option<Spanned<String>>,
    /// The path equals this (query string ignored unless `with_query`).
    #[serde(default)]
    path: Option<Spanned<String>>,
    /// The path starts with this.
    #[serde(default)]
    path_prefix: Option<Spanned<String>>,
    /// The path matches this glob (`*` stays within a segment, `**` crosses them).
    #[serde(default)]
    path_glob: Option<Spanned<String>>,
    /// The path matches this regular expression.
    #[serde(default)]
    path_regex: Option<Spanned<String>>,
    /// Match the path with its query string (`/login?next=/`). Default false.
    #[serde(default)]
    with_query: bool,
    /// The method is one of these (`"POST"` or `["GET", "POST"]`).
    #[serde(default)]
    method: Option<Spanned<OneOrMany<String>>>,
    /// The status is one of these: codes or classes such as `"4xx"`.
    #[serde(default)]
    status: Option<Spanned<OneOrMany<StatusValue>>>,
    /// The host (Host header or virtual host field) equals this, ignoring case.
    #[serde(default)]
    host: Option<Spanned<String>>,
    /// The user agent matches this regular expression.
    #[serde(default)]
    user_agent: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StatusValue {
    Code(u16),
    Class(String),
}

/// `[accesslog]`, validated.
#[derive(Debug, Clone)]
pub struct AccessLogSettings {
    /// The log format's name or nginx-style format string, with where it was written so
    /// that the parser crate's complaints can be located too.
    pub format: Located<String>,
    /// The metric every line counts as.
    pub request_metric: String,
    /// How client addresses are grouped into tokens (`ipv4_prefix`, `ipv6_prefix`).
    pub clients: ClientTokens,
    /// Clients never counted.
    pub ignore: Vec<IpNet>,
    /// Further metrics for matching lines.
    pub matchers: Vec<LineMatcher>,
    /// In event time, how far behind the newest line a line may be and still be counted in
    /// order (lines wait this long to be sorted).
    pub max_delay: Seconds,
    /// How many lines may wait to be sorted at once.
    pub max_buffered_lines: usize,
}

impl Default for AccessLogSettings {
    fn default() -> Self {
        AccessLogSettings {
            format: Located::unplaced("combined".to_owned()),
            request_metric: "request".to_owned(),
            clients: ClientTokens::default(),
            ignore: Vec::new(),
            matchers: Vec::new(),
            max_delay: Seconds::new(60),
            max_buffered_lines: 1_000_000,
        }
    }
}

impl AccessLogSettings {
    /// Whether the format was left to its default (not written, or `"auto"`): the front ends
    /// then read a CSV export, recognised by its header line, as CSV.
    pub fn format_is_default(&self) -> bool {
        self.format.line == 0 || self.format.value.trim().eq_ignore_ascii_case("auto")
    }

    /// `--max-delay`'s value, read as `[accesslog] max_delay` is: whole seconds (`90`) or a
    /// duration (`"2m"`).
    pub fn parse_max_delay(text: &str) -> Result<Seconds, String> {
        crate::parse_duration(text)
    }

    /// Whether `ip` is in an `ignore` range. An IPv4-mapped address (`::ffff:127.0.0.1`) is
    /// its IPv4 address.
    pub fn ignores(&self, ip: IpAddr) -> bool {
        nets_contain(&self.ignore, ip)
    }

    /// The token `ip` counts as ([`ClientTokens::token_of`]).
    pub fn token_of(&self, ip: IpAddr) -> String {
        self.clients.token_of(ip)
    }
}

/// A value with the place it was written, for errors found after the configuration was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    origin: String,
    line: usize,
    column: usize,
    field: String,
}

impl<T> Located<T> {
    /// A value not written anywhere (a default).
    pub fn unplaced(value: T) -> Self {
        Located {
            value,
            origin: String::new(),
            line: 0,
            column: 0,
            field: String::new(),
        }
    }

    /// An error about this value, located where it was written.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: if self.origin.is_empty() {
                "<default>".to_owned()
            } else {
                self.origin.clone()
            },
            line: self.line,
            column: self.column,
            field: self.field.clone(),
            message: message.into(),
        }
    }
}

/// How a matcher tests the path.
#[derive(Debug, Clone)]
pub enum PathTest {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Glob.
    Glob(GlobMatcher),
    /// Regular expression.
    Regex(Regex),
}

impl PathTest {
    /// Whether `path` passes.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathTest::Exact(p) => path == p,
            PathTest::Prefix(p) => path.starts_with(p.as_str()),
            PathTest::Glob(g) => g.is_match(path),
            PathTest::Regex(r) => r.is_match(path),
        }
    }
}

/// One `[[accesslog.match]]`, validated: every test present must pass.
#[derive(Debug, Clone)]
pub struct LineMatcher {
    /// The metric a matching line also counts as.
    pub metric: String,
    /// The path test, if any.
    pub path: Option<PathTest>,
    /// Test the path with its query string.
    pub with_query: bool,
    /// Accepted methods (upper case); empty accepts all.
    pub methods: Vec<String>,
    /// Accepted statuses as `(low, high)` inclusive ranges; empty accepts all.
    pub statuses: Vec<(u16, u16)>,
    /// Accepted host, lower case.
    pub host: Option<String>,
    /// User-agent test.
    pub user_agent: Option<Regex>,
}

impl Cx<'_> {
    pub(crate) fn accesslog(&mut self, value: &Spanned<DeValue<'_>>) -> Option<AccessLogSettings> {
        // `[[accesslog.match]]` entries are read one by one, so each reports its own errors.
        let mut rest = DeTable::new();
        let mut matchers = Vec::new();
        if let Some(table) = value.get_ref().as_table() {
            for (k, v) in table {
                if k.get_ref().as_ref() == "match" {
                    match v.get_ref().as_array() {
                        Some(items) => matchers.extend(items.iter().cloned()),
                        None => self.push(
                            Some(v.span()),
                            "accesslog.match",
                            "must be an array of tables ([[accesslog.match]])",
                        ),
                    }
                } else {
                    rest.insert(k.clone(), v.clone());
                }
            }
        }
        let value = if value.get_ref().is_table() {
            Spanned::new(value.span(), DeValue::Table(rest))
        } else {
            value.clone()
        };
        let raw = self.de::<RawAccessLog>("accesslog", &value)?;
        let mut s = AccessLogSettings::default();
        if let Some(f) = raw.format {
            s.format = self.located(&f, "accesslog.format");
        }
        if let Some(m) = raw.request_metric {
            s.request_metric = m.into_inner();
        }
        s.clients = self.client_tokens("accesslog", raw.ipv4_prefix, raw.ipv6_prefix);
        if let Some(d) = &raw.max_delay {
            if let Some(secs) = self.duration("accesslog.max_delay", d) {
                s.max_delay = Seconds::new(secs);
            }
        }
        if let Some(n) = raw.max_buffered_lines {
            match usize::try_from(*n.get_ref()) {
                Ok(lines) if lines > 0 => s.max_buffered_lines = lines,
                _ => self.push(
                    Some(n.span()),
                    "accesslog.max_buffered_lines",
                    "must be at least 1",
                ),
            }
        }
        for net in &raw.ignore {
            match parse_net(net.get_ref()) {
                Some(n) => s.ignore.push(canonical_net(n)),
                None => self.push(
                    Some(net.span()),
                    "accesslog.ignore",
                    format!("`{}` is not an address or CIDR range", net.get_ref().trim()),
                ),
            }
        }
        for (i, m) in matchers.iter().enumerate() {
            let field = format!("accesslog.match[{i}]");
            if let Some(matcher) = self.matcher(&field, m) {
                s.matchers.push(matcher);
            }
        }
        Some(s)
    }

    fn located<T: Clone>(&self, v: &Spanned<T>, field: &str) -> Located<T> {
        let e = self.src.error(Some(v.span()), field, "");
        Located {
            value: v.get_ref().clone(),
            origin: e.origin,
            line: e.line,
            column: e.column,
            field: field.to_owned(),
        }
    }

    fn matcher(&mut self, field: &str, m: &Spanned<DeValue<'_>>) -> Option<LineMatcher> {
        let span = m.span();
        let raw: RawMatcher = self.de(field, m)?;
        let before = self.errors.len();
        let metric = match raw.metric {
            Some(m) if !m.get_ref().is_empty() => {
                self.metric_refs.push((
                    m.get_ref().clone(),
                    span.clone(),
                    format!("{field}.metric"),
                ));
                m.into_inner()
            }
            _ => {
                self.push(
                    Some(span.clone()),
                    &format!("{field}.metric"),
                    "is required (the metric matching lines count as)",
                );
                String::new()
            }
        };
        let tests: Vec<(&str, &Spanned<String>)> = [
            ("path", &raw.path),
            ("path_prefix", &raw.path_prefix),
            ("path_glob", &raw.path_glob),
            ("path_regex", &raw.path_regex),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        if tests.len() > 1 {
            self.push(
                Some(tests[1].1.span()),
                &format!("{field}.{}", tests[1].0),
                "use one of path, path_prefix, path_glob, path_regex",
            );
        }
        let path = tests
            .first()
            .and_then(|(kind, v)| self.path_test(field, kind, v));
        let methods = raw
            .method
            .map(|m| {
                m.into_inner()
                    .into_vec()
                    .into_iter()
                    .map(|s| s.to_ascii_uppercase())
                    .collect()
            })
            .unwrap_or_default();
        let mut statuses = Vec::new();
        if let Some(st) = raw.status {
            let st_span = st.span();
            for v in st.into_inner().into_vec() {
                match status_range(&v) {
                    Some(r) => statuses.push(r),
                    None => self.push(
                        Some(st_span.clone()),
                        &format!("{field}.status"),
                        "expected status codes (100–599) or classes such as \"4xx\"",
                    ),
                }
            }
        }
        let user_agent = raw
            .user_agent
            .and_then(|ua| self.regex(&format!("{field}.user_agent"), &ua));
        if self.errors.len() > before {
            return None;
        }
        Some(LineMatcher {
            metric,
            path,
            with_query: raw.with_query,
            methods,
            statuses,
            host: raw.host.map(|h| h.into_inner().to_ascii_lowercase()),
            user_agent,
        })
    }

    fn path_test(&mut self, field: &str, kind: &str, v: &Spanned<String>) -> Option<PathTest> {
        let text = v.get_ref().clone();
        match kind {
            "path" => Some(PathTest::Exact(text)),
            "path_prefix" => Some(PathTest::Prefix(text)),
            "path_glob" => match Glob::new(&text) {
                Ok(g) => Some(PathTest::Glob(g.compile_matcher())),
                Err(e) => {
                    self.push(Some(v.span()), &format!("{field}.path_glob"), e.to_string());
                    None
                }
            },
            _ => self
                .regex(&format!("{field}.path_regex"), v)
                .map(PathTest::Regex),
        }
    }

    fn regex(&mut self, field: &str, v: &Spanned<String>) -> Option<Regex> {
        match regex::RegexBuilder::new(v.get_ref())
            .size_limit(1 << 20)
            .build()
        {
            Ok(r) => Some(r),
            Err(e) => {
                let first = e.to_string().lines().last().unwrap_or_default().to_owned();
                self.push(
                    Some(v.span()),
                    field,
                    format!("not a regular expression: {first}"),
                );
                None
            }
        }
    }
}

fn status_range(v: &StatusValue) -> Option<(u16, u16)> {
    match v {
        StatusValue::Code(c) if (100..=599).contains(c) => Some((*c, *c)),
        StatusValue::Code(_) => None,
        StatusValue::Class(s) => {
            let b = s.as_bytes();
            if b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && b[1..].eq_ignore_ascii_case(b"xx") {
                let base = u16::from(b[0] - b'0') * 100;
                Some((base, base + 99))
            } else {
                s.parse::<u16>()
                    .ok()
                    .filter(|c| (100..=599).contains(c))
                    .map(|c| (c, c))
            }
        }
    }
}
