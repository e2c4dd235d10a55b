//! `[serve]` and `[detect]`: the HTTP service and its credential-stuffing detector.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use crate::clients::ClientTokens;
use crate::context::Cx;
use crate::CommandTemplate;

/// Where settings may also come from: the process environment, or a map in tests (tests never
/// change the real environment).
pub trait Env {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// `[serve]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    /// Address to listen on. Default `127.0.0.1:8080`.
    #[serde(default)]
    listen: Option<Spanned<String>>,
    /// SQLite file for the decision log and active bans. Default `banhammer.sqlite`.
    #[serde(default)]
    db: Option<String>,
    /// Return `token_rate_1m/10m/60m` with every `POST /v1/incr` (also `?rates=true`).
    #[serde(default)]
    return_rates: bool,
    /// Bearer token required by admin routes (`now`, `status`, `bans`). Also from the
    /// environment variable `BANHAMMER_ADMIN_TOKEN`. Default: none (admin routes open, which
    /// `serve` allows only on a loopback address unless `insecure_open_admin`). An empty or
    /// blank token is an error.
    #[serde(default)]
    admin_token: Option<Spanned<String>>,
    /// Serve admin routes without a token on a non-loopback address. Default false: `serve`
    /// refuses to start there without a token. `--insecure-open-admin` sets it.
    #[serde(default)]
    insecure_open_admin: bool,
    /// Keys CrowdSec bouncers send in `X-Api-Key` to read bans from `/v1/decisions` and
    /// `/v1/decisions/stream`, one per bouncer. Default: none (those routes answer 403). An
    /// empty or blank key is an error.
    #[serde(default)]
    bouncer_api_keys: Vec<Spanned<String>>,
    /// Where `POST /v1/incr` takes the token from: `"body"` (what the caller sends; default)
    /// or `"peer"` (the client address, from `X-Forwarded-For` only behind trusted proxies).
    #[serde(default)]
    token_from: Option<Spanned<String>>,
    /// Proxies whose `X-Forwarded-For` is believed, as addresses or CIDR ranges.
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
    /// Clients never counted and never banned (an allowlist), as addresses or CIDR ranges,
    /// matched against the client address (after `trusted_proxies`): `GET /v1/check`,
    /// `POST /v1/incr` (the peer with `token_from = "peer"`, or a body token that is an
    /// address in the list) and `PUT /detect` (its `ip`) pass them uncounted; a ban by hand
    /// or a fire (`POST /v1/now`) of such a token is refused. Default none.
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    /// Count IPv4 clients (the peer with `token_from = "peer"`, `/detect`'s `ip`, the
    /// forward-auth check's client) by this prefix length. Default 32: each address.
    #[serde(default)]
    ipv4_prefix: Option<Spanned<u8>>,
    /// Count IPv6 clients by this prefix length. Default 64: an IPv6 subscriber usually owns
    /// a /64 and can rotate through it; 128 counts each address.
    #[serde(default)]
    ipv6_prefix: Option<Spanned<u8>>,
    /// `[serve.check]`: `GET /v1/check`, the forward-auth check for reverse proxies. Without
    /// this section the route answers 404.
    #[serde(default)]
    check: Option<Spanned<RawCheck>>,
    /// Largest request body accepted, in bytes. Default 16384.
    #[serde(default)]
    max_body_bytes: Option<Spanned<u64>>,
    /// Time allowed to read a request and answer it, in milliseconds. Default 10000.
    #[serde(default)]
    request_timeout_ms: Option<Spanned<u64>>,
    /// Connections open at once. At the cap, the connection idle the longest (no request
    /// under way) is closed to make room; when none is idle, new ones wait to be accepted.
    /// Default 10000.
    #[serde(default)]
    max_connections: Option<Spanned<u64>>,
    /// Connections open at once from one peer address (IPv6: one /64). Past it, new ones are
    /// closed at once. `trusted_proxies` are exempt. Default 256.
    #[serde(default)]
    max_connections_per_peer: Option<Spanned<u64>>,
    /// A connection with no request under way is closed after this long, in milliseconds:
    /// from accept to a complete request head, and between requests on a kept-alive
    /// connection. Default 10000.
    #[serde(default)]
    idle_timeout_ms: Option<Spanned<u64>>,
    /// Shared state: `redis://host:port` or `redis+cluster://h1:p1,h2:p2,…` (`rediss` for
    /// TLS). Default: in memory (one node).
    #[serde(default)]
    store: Option<Spanned<String>>,
    /// With TLS: a PEM file of the CA certificates that alone are trusted to sign the Redis
    /// servers' certificates. Default: the system's roots.
    #[serde(default)]
    store_ca: Option<Spanned<String>>,
    /// Time allowed per call to the shared store, in milliseconds. Default 50.
    #[serde(default)]
    store_timeout_ms: Option<Spanned<u64>>,
    /// Run this command on each ban this node makes (and for each active ban at start),
    /// without a shell; the placeholders of `[watch] ban_command`.
    #[serde(default)]
    ban_command: Option<Spanned<String>>,
    /// Run this command when a ban is extended (`{duration}`: the time now left). Default:
    /// `ban_command`.
    #[serde(default)]
    extend_command: Option<Spanned<String>>,
    /// Run this command on each unban this node makes or sees end.
    #[serde(default)]
    unban_command: Option<Spanned<String>>,
}

/// `[serve.check]`: how `GET /v1/check` counts and answers the requests a reverse proxy asks
/// about.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    /// The metric each checked request counts as, unless the proxy names another. It must be
    /// defined in `[metrics]`. Default `"request"`.
    #[serde(default)]
    metric: Option<Spanned<String>>,
    /// Further metrics a trusted proxy may name per request, with `/v1/check/NAME` as its
    /// check URL (or the `X-Banhammer-Metric` header with `metric_header`). Each must be
    /// defined in `[metrics]`. Default none: every check counts as `metric`.
    #[serde(default)]
    metrics: Vec<Spanned<String>>,
    /// Also take the metric from the `X-Banhammer-Metric` header (from trusted proxies only;
    /// the URL's name wins). Default false: proxies pass the client's own headers on to the
    /// check unless they set this one, so turn it on only where every proxy sets it.
    #[serde(default)]
    metric_header: bool,
    /// The status a banned client is answered, with `Retry-After`: 403 (nginx `auth_request`
    /// passes on only 401 and 403, and answers 500 for any other refusal) or 429 (Caddy and
    /// Traefik pass it on, with `Retry-After`). Default 403.
    #[serde(default)]
    banned_status: Option<Spanned<u16>>,
}

/// `[serve.check]`, validated: the forward-auth check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSettings {
    /// The metric a check counts as when the proxy names none.
    pub metric: String,
    /// The other metrics a trusted proxy may name.
    pub metrics: Vec<String>,
    /// Whether a trusted proxy may name the metric in `X-Banhammer-Metric`.
    pub metric_header: bool,
    /// The status of a refusal: 403 or 429.
    pub banned_status: u16,
}

impl Default for CheckSettings {
    fn default() -> Self {
        CheckSettings {
            metric: "request".to_owned(),
            metrics: Vec::new(),
            metric_header: false,
            banned_status: 403,
        }
    }
}

impl CheckSettings {
    /// Whether a trusted proxy may have a check count as `metric`.
    pub fn may_name(&self, metric: &str) -> bool {
        self.metric == metric || self.metrics.iter().any(|m| m == metric)
    }
}

/// Where `POST /v1/incr` takes its token from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenFrom {
    /// The request body's `token`.
    #[default]
    Body,
    /// The client address.
    Peer,
}

/// `[serve]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// SQLite decision store.
    pub db: PathBuf,
    /// Rates with every incr.
    pub return_rates: bool,
    /// Admin bearer token (never empty or blank).
    pub admin_token: Option<String>,
    /// Admin routes may be open (no token) on a non-loopback address.
    pub insecure_open_admin: bool,
    /// Keys accepted from CrowdSec bouncers (`X-Api-Key`), none empty or blank.
    pub bouncer_api_keys: Vec<String>,
    /// Token source for incr.
    pub token_from: TokenFrom,
    /// Trusted proxies.
    pub trusted_proxies: Vec<IpNet>,
    /// Clients never counted nor banned: every route that takes a client address passes
    /// them uncounted, and bans by hand of them are refused.
    pub allow: Vec<IpNet>,
    /// How client addresses are grouped into tokens (`ipv4_prefix`, `ipv6_prefix`).
    pub clients: ClientTokens,
    /// The forward-auth check (`GET /v1/check`), when configured.
    pub check: Option<CheckSettings>,
    /// Body cap.
    pub max_body_bytes: usize,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Connection cap (the longest-idle connection is closed to make room).
    pub max_connections: usize,
    /// Connection cap per peer address (IPv6: per /64); trusted proxies are exempt.
    pub max_connections_per_peer: usize,
    /// How long a connection may stay with no request under way, from accept or from the
    /// end of its last answer.
    pub idle_timeout: Duration,
    /// The shared store's URL, if the state is shared.
    pub store: Option<String>,
    /// The CA certificates (PEM file) trusted for the store's TLS, instead of the system's.
    pub store_ca: Option<PathBuf>,
    /// Per-call timeout to the shared store.
    pub store_timeout: Duration,
    /// Command run on each ban, and for each active ban at start.
    pub ban_command: Option<CommandTemplate>,
    /// Command run on each extension (`ban_command` unless set).
    pub extend_command: Option<CommandTemplate>,
    /// Command run on each unban.
    pub unban_command: Option<CommandTemplate>,
}

impl ServeSettings {
    /// Whether the client `ip` is in `allow`: never counted, never banned.
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        !self.allow.is_empty() && crate::clients::nets_contain(&self.allow, ip)
    }

    /// Whether the token `token` names only clients in `allow` (an address in it, or a
    /// network wholly inside it).
    pub fn allows_token(&self, token: &str) -> bool {
        // Every `/v1/incr` asks: with no list, no token is parsed.
        !self.allow.is_empty() && crate::clients::nets_cover(&self.allow, token)
    }
}

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            db: PathBuf::from("banhammer.sqlite"),
            return_rates: false,
            admin_token: None,
            insecure_open_admin: false,
            bouncer_api_keys: Vec::new(),
            token_from: TokenFrom::Body,
            trusted_proxies: Vec::new(),
            allow: Vec::new(),
            clients: ClientTokens::default(),
            check: None,
            max_body_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_connections_per_peer: 256,
            idle_timeout: Duration::from_secs(10),
            store: None,
            store_ca: None,
            store_timeout: Duration::from_millis(50),
            ban_command: None,
            extend_command: None,
            unban_command: None,
        }
    }
}

/// `[detect]`: the credential-stuffing detector behind `PUT /detect`. Each field may also
/// come from the environment variable named in capitals, which wins.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetect {
    /// `IP_REQUESTS_LIMIT`: requests per IP and event name allowed within the sample period
    /// (the next one is the attack). Default 10.
    #[serde(default)]
    ip_requests_limit: Option<Spanned<u64>>,
    /// `IP_EMAILS_LIMIT`: distinct emails per IP and event name allowed within the sample
    /// period. Default 2.
    #[serde(default)]
    ip_emails_limit: Option<Spanned<u64>>,
    /// `SAMPLE_PERIOD`: the window, in seconds. Default 5.
    #[serde(default)]
    sample_period: Option<Spanned<u64>>,
    /// `IP_BAN_TIME`: how long a detected IP is answered `true`, in seconds. Default 30.
    #[serde(default)]
    ip_ban_time: Option<Spanned<u64>>,
}

/// `[detect]`, validated: the original service's four numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectSettings {
    /// Requests allowed per IP and event name in the sample period.
    pub ip_requests_limit: u64,
    /// Distinct emails allowed per IP and event name in the sample period.
    pub ip_emails_limit: u64,
    /// The sample period, seconds (at least 1).
    pub sample_period: u64,
    /// The ban, seconds (at least 1).
    pub ip_ban_time: u64,
}

impl Default for DetectSettings {
    fn default() -> Self {
        DetectSettings {
            ip_requests_limit: 10,
            ip_emails_limit: 2,
            sample_period: 5,
            ip_ban_time: 30,
        }
    }
}

impl DetectSettings {
    /// The metric family the detector counts in: `detect:{event_name}` per IP.
    pub const FAMILY: &'static str = "detect:*";
}

/// One `[detect]` number: field, environment variable, file value, where it goes, minimum.
type DetectField<'a> = (&'a str, &'a str, Option<Spanned<u64>>, &'a mut u64, u64);

impl Cx<'_> {
    pub(crate) fn serve(&mut self, value: &Spanned<DeValue<'_>>) -> Option<ServeSettings> {
        let raw = self.de::<RawServe>("serve", value)?;
        let mut s = ServeSettings::default();
        if let Some(l) = raw.listen {
            match l.get_ref().parse() {
                Ok(a) => s.listen = a,
                Err(_) => self.push(
                    Some(l.span()),
                    "serve.listen",
                    format!("`{}` is not an address such as 127.0.0.1:8080", l.get_ref()),
                ),
            }
        }
        if let Some(db) = raw.db {
            s.db = PathBuf::from(db);
        }
        s.return_rates = raw.return_rates;
        if let Some(t) = raw.admin_token {
            if t.get_ref().trim().is_empty() {
                // "" used to mean "no token": say so instead of leaving admin routes open.
                self.push(
                    Some(t.span()),
                    "serve.admin_token",
                    "an empty token protects nothing: set a secret, or remove the field \
                     (admin routes are then open, which serve allows only on loopback)",
                );
            } else {
                s.admin_token = Some(t.into_inner());
            }
        }
        s.insecure_open_admin = raw.insecure_open_admin;
        for k in raw.bouncer_api_keys {
            if k.get_ref().trim().is_empty() {
                // As with admin_token: a blank key would let any bouncer read the bans.
                self.push(
                    Some(k.span()),
                    "serve.bouncer_api_keys",
                    "an empty key protects nothing: give each bouncer a secret",
                );
            } else {
                s.bouncer_api_keys.push(k.into_inner());
            }
        }
        if let Some(t) = raw.token_from {
            match t.get_ref().as_str() {
                "body" => s.token_from = TokenFrom::Body,
                "peer" => s.token_from = TokenFrom::Peer,
                other => self.push(
                    Some(t.span()),
                    "serve.token_from",
                    format!("`{other}` is not \"body\" or \"peer\""),
                ),
            }
        }
        s.trusted_proxies = self.nets("serve.trusted_proxies", &raw.trusted_proxies);
        s.allow = self.nets("serve.allow", &raw.allow);
        s.clients = self.client_tokens("serve", raw.ipv4_prefix, raw.ipv6_prefix);
        if let Some(check) = raw.check {
            s.check = Some(self.check(check));
        }
        let mut bounded = |field: &str, v: Option<Spanned<u64>>, lo: u64, hi: u64| {
            v.and_then(|v| {
                let n = *v.get_ref();
                if (lo..=hi).contains(&n) {
                    Some(n)
                } else {
                    self.push(Some(v.span()), field, format!("must be {lo} to {hi}"));
                    None
                }
            })
        };
        if let Some(n) = bounded(
            "serve.max_body_bytes",
            raw.max_body_bytes,
            64,
            64 * 1024 * 1024,
        ) {
            s.max_body_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = bounded(
            "serve.request_timeout_ms",
            raw.request_timeout_ms,
            10,
            600_000,
        ) {
            s.request_timeout = Duration::from_millis(n);
        }
        if let Some(n) = bounded("serve.max_connections", raw.max_connections, 1, 1_000_000) {
            s.max_connections = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = bounded(
            "serve.max_connections_per_peer",
            raw.max_connections_per_peer,
            1,
            1_000_000,
        ) {
            s.max_connections_per_peer = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = bounded("serve.idle_timeout_ms", raw.idle_timeout_ms, 10, 3_600_000) {
            s.idle_timeout = Duration::from_millis(n);
        }
        if let Some(n) = bounded("serve.store_timeout_ms", raw.store_timeout_ms, 1, 60_000) {
            s.store_timeout = Duration::from_millis(n);
        }
        let mut tls = false;
        if let Some(url) = raw.store {
            let text = url.get_ref();
            let schemes = [
                ("redis://", false),
                ("redis+cluster://", false),
                ("rediss://", true),
                ("rediss+cluster://", true),
            ];
            if let Some((_, t)) = schemes.iter().find(|(p, _)| text.starts_with(p)) {
                tls = *t;
                s.store = Some(text.clone());
            } else {
                self.push(
                    Some(url.span()),
                    "serve.store",
                    format!(
                        "`{text}` is not redis://host:port or redis+cluster://host:port,… \
                         (rediss for TLS)"
                    ),
                );
            }
        }
        if let Some(ca) = raw.store_ca {
            if s.store.is_some() && !tls {
                self.push(
                    Some(ca.span()),
                    "serve.store_ca",
                    "a CA is only used with TLS: `store` must be rediss:// or \
                     rediss+cluster://"
                        .to_owned(),
                );
            }
            s.store_ca = Some(PathBuf::from(ca.into_inner()));
        }
        (s.ban_command, s.extend_command, s.unban_command) = self.ban_commands(
            "serve",
            raw.ban_command,
            raw.extend_command,
            raw.unban_command,
        );
        Some(s)
    }

    /// Addresses or CIDR ranges; each other value is an error at its place.
    fn nets(&mut self, field: &str, values: &[Spanned<String>]) -> Vec<IpNet> {
        let mut nets = Vec::with_capacity(values.len());
        for v in values {
            match crate::clients::parse_net(v.get_ref()) {
                Some(n) => nets.push(n),
                None => self.push(
                    Some(v.span()),
                    field,
                    format!("`{}` is not an address or CIDR range", v.get_ref()),
                ),
            }
        }
        nets
    }

    /// `[serve.check]`; its metrics are checked against `[metrics]` once all are read.
    fn check(&mut self, raw: Spanned<RawCheck>) -> CheckSettings {
        let section = raw.span();
        let raw = raw.into_inner();
        let mut c = CheckSettings {
            metric_header: raw.metric_header,
            ..CheckSettings::default()
        };
        // The default metric must exist too: it is placed at the section when not written.
        let (metric, span) = match raw.metric {
            Some(m) => (m.get_ref().clone(), m.span()),
            None => (c.metric.clone(), section),
        };
        self.metric_refs
            .push((metric.clone(), span, "serve.check.metric".to_owned()));
        c.metric = metric;
        for m in raw.metrics {
            self.metric_refs.push((
                m.get_ref().clone(),
                m.span(),
                "serve.check.metrics".to_owned(),
            ));
            c.metrics.push(m.into_inner());
        }
        if let Some(status) = raw.banned_status {
            match *status.get_ref() {
                n @ (403 | 429) => c.banned_status = n,
                _ => self.push(
                    Some(status.span()),
                    "serve.check.banned_status",
                    "must be 403 or 429",
                ),
            }
        }
        c
    }

    pub(crate) fn detect(
        &mut self,
        value: Option<&Spanned<DeValue<'_>>>,
        env: &dyn Env,
    ) -> DetectSettings {
        let raw = match value {
            Some(v) => self.de::<RawDetect>("detect", v).unwrap_or_default(),
            None => RawDetect::default(),
        };
        let mut d = DetectSettings::default();
        let fields: [DetectField<'_>; 4] = [
            (
                "detect.ip_requests_limit",
                "IP_REQUESTS_LIMIT",
                raw.ip_requests_limit,
                &mut d.ip_requests_limit,
                0,
            ),
            (
                "detect.ip_emails_limit",
                "IP_EMAILS_LIMIT",
                raw.ip_emails_limit,
                &mut d.ip_emails_limit,
                0,
            ),
            (
                "detect.sample_period",
                "SAMPLE_PERIOD",
                raw.sample_period,
                &mut d.sample_period,
                1,
            ),
            (
                "detect.ip_ban_time",
                "IP_BAN_TIME",
                raw.ip_ban_time,
                &mut d.ip_ban_time,
                1,
            ),
        ];
        for (field, var, file, slot, min) in fields {
            if let Some(v) = file {
                if *v.get_ref() < min || *v.get_ref() > 1_000_000 {
                    self.push(Some(v.span()), field, format!("must be {min} to 1000000"));
                } else {
                    *slot = *v.get_ref();
                }
            }
            if let Some(text) = env.var(var) {
                match text.trim().parse::<u64>() {
                    Ok(n) if (min..=1_000_000).contains(&n) => *slot = n,
                    _ => self.errors.push(crate::ConfigError {
                        origin: format!("environment variable {var}"),
                        line: 0,
                        column: 0,
                        field: field.to_owned(),
                        message: format!("`{text}` must be a whole number from {min} to 1000000"),
                    }),
                }
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::Config;

    /// Every error of `text`, one a line.
    fn errors(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn an_empty_or_blank_admin_token_is_an_error_at_its_place() {
        for token in ["\"\"", "\"  \"", "\"\\t\""] {
            let text = format!("[serve]\nlisten = \"127.0.0.1:9000\"\nadmin_token = {token}\n");
            let errs = errors(&text);
            assert!(!errs.contains('\n'), "one error: {errs}");
            assert!(
                errs.starts_with("t.toml:3:15: serve.admin_token: an empty token protects nothing"),
                "{errs}"
            );
        }
        let c = Config::parse("[serve]\nadmin_token = \"s3cret\"\n", "t.toml").unwrap();
        assert_eq!(c.serve.admin_token.as_deref(), Some("s3cret"));
        assert!(!c.serve.insecure_open_admin);
    }

    #[test]
    fn bouncer_api_keys_are_read_and_a_blank_one_is_an_error_at_its_place() {
        let c = Config::parse("[serve]\nbouncer_api_keys = [\"k1\", \"k2\"]\n", "t.toml").unwrap();
        assert_eq!(c.serve.bouncer_api_keys, ["k1", "k2"]);
        assert!(Config::parse("", "t.toml")
            .unwrap()
            .serve
            .bouncer_api_keys
            .is_empty());
        assert_eq!(
            errors("[serve]\nbouncer_api_keys = [\"k1\", \" \"]\n"),
            "t.toml:2:27: serve.bouncer_api_keys: an empty key protects nothing: give each \
             bouncer a secret"
        );
    }

    #[test]
    fn connection_limits_read_with_defaults_and_bounds() {
        let d = Config::parse("", "t.toml").unwrap().serve;
        assert_eq!(
            (
                d.max_connections,
                d.max_connections_per_peer,
                d.idle_timeout
            ),
            (10_000, 256, Duration::from_secs(10))
        );
        let c = Config::parse(
            "[serve]\nmax_connections = 64\nmax_connections_per_peer = 8\nidle_timeout_ms = 300\n\
             insecure_open_admin = true\n",
            "t.toml",
        )
        .unwrap()
        .serve;
        assert_eq!(
            (
                c.max_connections,
                c.max_connections_per_peer,
                c.idle_timeout
            ),
            (64, 8, Duration::from_millis(300))
        );
        assert!(c.insecure_open_admin);
        assert_eq!(
            errors("[serve]\nmax_connections_per_peer = 0\nidle_timeout_ms = 5\n"),
            "t.toml:2:28: serve.max_connections_per_peer: must be 1 to 1000000\n\
             t.toml:3:19: serve.idle_timeout_ms: must be 10 to 3600000"
        );
    }

    /// A `request` metric, then `rest`.
    fn with_request(rest: &str) -> String {
        format!(
            "[metrics.request]\n[[metrics.request.thresholds]]\nlimit = 5\nwindow = 60\n\
             actions = [\"block_local\"]\naction_duration = 60\n\n{rest}"
        )
    }

    #[test]
    fn the_check_is_off_unless_configured_and_reads_with_defaults() {
        let d = Config::parse("", "t.toml").unwrap().serve;
        assert_eq!((d.check, d.allow), (None, Vec::new()));
        let c = Config::parse(&with_request("[serve.check]\n"), "t.toml")
            .unwrap()
            .serve;
        let check = c.check.unwrap();
        assert_eq!(check, crate::CheckSettings::default());
        assert_eq!(
            (
                check.metric.as_str(),
                check.banned_status,
                check.metric_header
            ),
            ("request", 403, false)
        );
        assert!(check.may_name("request") && !check.may_name("login_failed"));
    }

    #[test]
    fn the_check_reads_its_metrics_status_and_the_allow_list() {
        let text = with_request(
            "[metrics.login]\n[[metrics.login.thresholds]]\nlimit = 3\nwindow = 60\n\
             actions = [\"block_local\"]\naction_duration = 60\n\n\
             [serve]\nallow = [\"10.0.0.0/8\", \"192.0.2.1\", \"2001:db8::/32\"]\n\n\
             [serve.check]\nmetric = \"login\"\nmetrics = [\"request\"]\n\
             metric_header = true\nbanned_status = 429\n",
        );
        let s = Config::parse(&text, "t.toml").unwrap().serve;
        let allow: Vec<String> = s.allow.iter().map(ToString::to_string).collect();
        assert_eq!(allow, ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]);
        let check = s.check.unwrap();
        assert_eq!(
            (check.metric.as_str(), check.metrics.as_slice()),
            ("login", ["request".to_owned()].as_slice())
        );
        assert!(check.metric_header && check.banned_status == 429);
        assert!(check.may_name("request") && check.may_name("login") && !check.may_name("x"));
    }

    #[test]
    fn check_errors_are_placed_where_they_were_written() {
        // The default metric is missing: the error is at the section.
        assert_eq!(
            errors("[serve.check]\nbanned_status = 429\n"),
            "t.toml:1:1: serve.check.metric: metric `request` is not defined in [metrics]"
        );
        let text = with_request(
            "[serve]\nallow = [\"10.0.0.0/33\"]\n[serve.check]\nmetrics = [\"nope\"]\n\
             banned_status = 500\n",
        );
        let errs = errors(&text);
        for want in [
            "t.toml:9:10: serve.allow: `10.0.0.0/33` is not an address or CIDR range",
            "t.toml:11:12: serve.check.metrics: metric `nope` is not defined in [metrics]",
            "t.toml:12:17: serve.check.banned_status: must be 403 or 429",
        ] {
            assert!(errs.contains(want), "{want} in:\n{errs}");
        }
        let errs = errors(&with_request("[serve.check]\ncolour = 1\n"));
        assert!(
            errs.starts_with(
                "t.toml:9:1: serve.check.colour: unknown field `colour`, expected one of `metric`"
            ),
            "{errs}"
        );
    }
}
