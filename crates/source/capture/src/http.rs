//! HTTP/1.x on one direction of a connection: request or response heads parsed with httparse
//! (and request lines with a missing or malformed version, which servers still answer, by
//! hand), bodies skipped by `Content-Length` or chunk by chunk, and resynchronization on the
//! next head after garbage or a lost packet.

use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::net::IpAddr;

use crate::chunked::{Chunked, Progress};
use crate::reassembler::{Counters, Limits};
use crate::seen::{HttpRequest, HttpResponse, Seen};
use crate::stream::Delivery;

/// Headers parsed per head; a head with more is treated as garbage.
const MAX_HEADERS: usize = 128;
/// Longest method token accepted when looking for a request start.
const MAX_METHOD: usize = 24;
/// Requests remembered while their responses are awaited (pipelining depth).
const MAX_PENDING: usize = 64;
/// A head buffer that grew beyond this is given back after use.
const KEEP_HEAD_CAPACITY: usize = 4096;
/// Methods that make a request line a request even when its version is missing or malformed,
/// as Wireshark counts them (a server answers such lines, often with a 400): RFC 9110's, the
/// `WebDAV` and versioning ones, and the extensions seen on the wire (SSDP, MS-RPCH, SSTP).
const KNOWN_METHODS: [&[u8]; 44] = [
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"SEARCH",
    b"REPORT",
    b"MKCALENDAR",
    b"ACL",
    b"BIND",
    b"UNBIND",
    b"REBIND",
    b"ORDERPATCH",
    b"LABEL",
    b"MERGE",
    b"UPDATE",
    b"CHECKIN",
    b"CHECKOUT",
    b"UNCHECKOUT",
    b"MKACTIVITY",
    b"MKWORKSPACE",
    b"VERSION-CONTROL",
    b"BASELINE-CONTROL",
    b"POLL",
    b"NOTIFY",
    b"SUBSCRIBE",
    b"UNSUBSCRIBE",
    b"M-SEARCH",
    b"CCM_POST",
    b"RPC_CONNECT",
    b"RPC_IN_DATA",
    b"RPC_OUT_DATA",
    b"SSTP_DUPLEX_POST",
];

/// One end of a connection.
pub(crate) type End = (IpAddr, u16);

/// Which side of the connection is the client.
///
/// Ports do not decide it: until a SYN or a head says, both directions accept a head of
/// either kind, and a request head makes its sender the client (a response head, the
/// other side). Once known, each direction parses only its own kind, so a body that happens
/// to look like a head of the other kind cannot flip the roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// No SYN and no head seen yet.
    Unknown,
    /// The end with this index is the client.
    Known { client: usize },
}

/// What a request means for the body of its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// A `HEAD`: the response has no body whatever its headers say.
    Head,
    /// A `CONNECT`: a 2xx response turns the connection into a tunnel.
    Connect,
    /// A request line without a version (HTTP/0.9): the answer may be a bare body, no head.
    Simple,
    /// Anything else.
    Other,
}

/// State both directions of a connection share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) ends: [End; 2],
    pub(crate) role: Role,
    /// Requests whose responses have not been seen, oldest first.
    asked: VecDeque<Asked>,
    /// After `101 Switching Protocols` or a successful `CONNECT`: no more HTTP/1.
    tunnel: bool,
}

impl Shared {
    pub(crate) fn new(ends: [End; 2]) -> Shared {
        Shared {
            ends,
            role: Role::Unknown,
            asked: VecDeque::new(),
            tunnel: false,
        }
    }
}

/// Everything a direction's parser needs from around it.
pub(crate) struct Ctx<'a> {
    /// Which end sent these bytes.
    pub(crate) dir: usize,
    pub(crate) time_us: i64,
    pub(crate) shared: &'a mut Shared,
    pub(crate) limits: &'a Limits,
    pub(crate) counters: &'a mut Counters,
    pub(crate) out: &'a mut Vec<Seen>,
}

#[derive(Debug)]
enum Mode {
    /// Lost (or not yet found) our place: waiting for a segment that starts with a head.
    Resync,
    /// A head starts at the next byte.
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// Skipping a chunked body.
    Chunked(Chunked),
    /// A response body that runs to the end of the connection.
    UntilClose,
    /// Not HTTP/1 any more.
    Tunnel,
}

/// One direction's HTTP parser.
#[derive(Debug)]
pub(crate) struct HttpDir {
    mode: Mode,
    /// A head that spans segments, up to `max_head` bytes.
    head: Vec<u8>,
}

impl Default for HttpDir {
    fn default() -> Self {
        HttpDir {
            mode: Mode::Resync,
            head: Vec::new(),
        }
    }
}

/// What kind of head a direction carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Request,
    Response,
    /// Either (the role is not known yet).
    Any,
}

/// A complete head, owned.
enum Message {
    Request {
        method: String,
        target: String,
        host: Option<String>,
        body: Framing,
        /// No version: an HTTP/0.9 request line, with no headers after it.
        simple: bool,
    },
    Response {
        status: u16,
        body: Framing,
    },
}

/// How the body after a head is delimited, per its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No length headers.
    None,
    Length(u64),
    Chunked,
    /// `Transfer-Encoding` without a final `chunked`: a response runs until close.
    OtherCoding,
}

enum Parsed {
    Done(usize, Message),
    Partial,
    Error,
}

impl HttpDir {
    /// Bytes held for a head that spans segments.
    pub(crate) fn held(&self) -> usize {
        self.head.len()
    }

    /// Takes what the stream delivers.
    pub(crate) fn deliver(&mut self, delivery: Delivery<'_>, ctx: &mut Ctx<'_>) {
        if ctx.shared.tunnel && !matches!(self.mode, Mode::Tunnel) {
            self.mode = Mode::Tunnel;
            self.head = Vec::new();
        }
        match delivery {
            Delivery::Gap(n) => self.gap(n, ctx),
            Delivery::Data {
                bytes,
                segment_start,
            } => self.data(bytes, segment_start, ctx),
        }
    }

    fn gap(&mut self, n: u64, ctx: &mut Ctx<'_>) {
        match &mut self.mode {
            Mode::Body(left) if n <= *left => {
                *left -= n;
                if *left == 0 {
                    self.mode = Mode::Head;
                }
            }
            Mode::Chunked(c) if c.data_left().is_some_and(|left| n <= left) => c.skip_data(n),
            Mode::UntilClose | Mode::Tunnel | Mode::Resync => {}
            _ => self.lose_sync(ctx),
        }
    }

    fn lose_sync(&mut self, ctx: &mut Ctx<'_>) {
        self.mode = Mode::Resync;
        self.release_head();
        ctx.counters.resyncs += 1;
    }

    fn error(&mut self, ctx: &mut Ctx<'_>) {
        ctx.counters.http_errors += 1;
        self.lose_sync(ctx);
    }

    fn release_head(&mut self) {
        if self.head.capacity() > KEEP_HEAD_CAPACITY {
            self.head = Vec::new();
        } else {
            self.head.clear();
        }
    }

    fn data(&mut self, mut data: &[u8], segment_start: bool, ctx: &mut Ctx<'_>) {
        if matches!(self.mode, Mode::Resync) {
            if !(segment_start && may_start(data, kind(ctx))) {
                return;
            }
            self.mode = Mode::Head;
        }
        while !data.is_empty() {
            match &mut self.mode {
                Mode::Head => match self.head_step(data, ctx) {
                    Some(used) => data = &data[used..],
                    None => return,
                },
                Mode::Body(left) => {
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                    *left -= take as u64;
                    if *left == 0 {
                        self.mode = Mode::Head;
                    }
                    data = &data[take..];
                }
                Mode::Chunked(c) => match c.feed(data) {
                    Progress::Done(used) => {
                        self.mode = Mode::Head;
                        data = &data[used..];
                    }
                    Progress::More => return,
                    Progress::Malformed => return self.error(ctx),
                },
                Mode::UntilClose | Mode::Tunnel | Mode::Resync => return,
            }
        }
    }

    /// Works on a head; returns the bytes of `data` it used when the head is complete.
    fn head_step(&mut self, data: &[u8], ctx: &mut Ctx<'_>) -> Option<usize> {
        let max_head = ctx.limits.max_head;
        let kind = kind(ctx);
        if self.head.is_empty() {
            if !may_start(data, kind) {
                if kind == Kind::Response && ctx.shared.asked.front() == Some(&Asked::Simple) {
                    // The answer to an HTTP/0.9 request: a bare body until the server closes.
                    ctx.shared.asked.pop_front();
                    self.mode = Mode::UntilClose;
                } else {
                    self.error(ctx);
                }
                return None;
            }
            return match parse(data, kind) {
                Parsed::Done(used, message) if used <= max_head => {
                    self.complete(message, ctx);
                    Some(used)
                }
                Parsed::Partial if data.len() < max_head => {
                    self.head.extend_from_slice(data);
                    None
                }
                Parsed::Done(..) | Parsed::Partial | Parsed::Error => {
                    self.error(ctx);
                    None
                }
            };
        }
        let old = self.head.len();
        let take = max_head.saturating_sub(old).min(data.len());
        self.head.extend_from_slice(&data[..take]);
        // A head can only complete on a newline.
        let parsed = if data[..take].contains(&b'\n') {
            parse(&self.head, kind)
        } else {
            Parsed::Partial
        };
        match parsed {
            Parsed::Done(used, message) => {
                self.release_head();
                self.complete(message, ctx);
                Some(used.saturating_sub(old).max(1).min(data.len()))
            }
            Parsed::Partial if self.head.len() < max_head => None,
            Parsed::Partial | Parsed::Error => {
                self.error(ctx);
                None
            }
        }
    }

    /// A complete head: report it and set up for its body.
    fn complete(&mut self, message: Message, ctx: &mut Ctx<'_>) {
        let shared = &mut *ctx.shared;
        match message {
            Message::Request {
                method,
                target,
                host,
                body,
                simple,
            } => {
                self.mode = match body {
                    // Nothing after an HTTP/0.9 line is framed (the server answers it and
                    // closes): wait quietly for a segment that starts a request.
                    _ if simple => Mode::Resync,
                    Framing::None | Framing::Length(0) => Mode::Head,
                    Framing::Length(n) => Mode::Body(n),
                    Framing::Chunked => Mode::Chunked(Chunked::new()),
                    // A request must end where the server can tell: anything else is garbage.
                    Framing::OtherCoding => return self.error(ctx),
                };
                shared.role = Role::Known { client: ctx.dir };
                let asked = match method.as_str() {
                    _ if simple => Asked::Simple,
                    "HEAD" => Asked::Head,
                    "CONNECT" => Asked::Connect,
                    _ => Asked::Other,
                };
                if shared.asked.len() == MAX_PENDING {
                    shared.asked.pop_front();
                }
                shared.asked.push_back(asked);
                let (client, server) = (shared.ends[ctx.dir], shared.ends[1 - ctx.dir]);
                ctx.counters.requests += 1;
                ctx.out.push(Seen::Request(HttpRequest {
                    time_us: ctx.time_us,
                    client: client.0,
                    client_port: client.1,
                    server: server.0,
                    server_port: server.1,
                    method,
                    target,
                    host,
                }));
            }
            Message::Response { status, body } => {
                shared.role = Role::Known {
                    client: 1 - ctx.dir,
                };
                if (100..200).contains(&status) && status != 101 {
                    // Interim (100 Continue, 103 Early Hints): the final response follows.
                    self.mode = Mode::Head;
                    return;
                }
                let asked = shared.asked.pop_front().unwrap_or(Asked::Other);
                // A proxy's 2xx to CONNECT has no body (RFC 9110 9.3.6): one with a body comes
                // from a web server that ignored the method and keeps speaking HTTP.
                let tunnel = asked == Asked::Connect
                    && (200..300).contains(&status)
                    && !matches!(body, Framing::Chunked | Framing::Length(1..));
                let bytes;
                (self.mode, bytes) = if status == 101 || tunnel {
                    shared.tunnel = true;
                    (Mode::Tunnel, None)
                } else if asked == Asked::Head || status == 204 || status == 304 {
                    (Mode::Head, Some(0))
                } else {
                    match body {
                        Framing::Length(0) => (Mode::Head, Some(0)),
                        Framing::Length(n) => (Mode::Body(n), Some(n)),
                        Framing::Chunked => (Mode::Chunked(Chunked::new()), None),
                        Framing::None | Framing::OtherCoding => (Mode::UntilClose, None),
                    }
                };
                ctx.counters.responses += 1;
                ctx.out.push(Seen::Response(HttpResponse {
                    time_us: ctx.time_us,
                    client: shared.ends[1 - ctx.dir].0,
                    server: shared.ends[ctx.dir].0,
                    status,
                    bytes,
                }));
            }
        }
    }
}

/// The kind of head this direction carries.
fn kind(ctx: &Ctx<'_>) -> Kind {
    match ctx.shared.role {
        Role::Known { client } if client == ctx.dir => Kind::Request,
        Role::Known { .. } => Kind::Response,
        Role::Unknown => Kind::Any,
    }
}

/// Skips the empty lines a peer may send between messages.
fn skip_newlines(data: &[u8]) -> &[u8] {
    let start = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(data.len());
    &data[start..]
}

/// Whether `data` may be the start of a head of this kind: a method token and a space (or a
/// prefix of one) for a request, `HTTP/1.` (or a prefix) for a response.
fn may_start(data: &[u8], kind: Kind) -> bool {
    let data = skip_newlines(data);
    let request = || {
        let token = data
            .iter()
            .take(MAX_METHOD + 1)
            .take_while(|b| b.is_ascii_uppercase() || **b == b'-' || **b == b'_')
            .count();
        token <= MAX_METHOD && (token == data.len() || token > 0 && data[token] == b' ')
    };
    let response = || {
        let n = data.len().min(7);
        data[..n] == b"HTTP/1."[..n]
    };
    match kind {
        Kind::Request => request(),
        Kind::Response => response(),
        Kind::Any => request() || response(),
    }
}

/// Parses a head of the given kind at the start of `data`.
fn parse(data: &[u8], kind: Kind) -> Parsed {
    let start = skip_newlines(data);
    let kind = match kind {
        Kind::Any if start.len() < 5 && b"HTTP/".starts_with(start) => return Parsed::Partial,
        Kind::Any if start.starts_with(b"HTTP/") => Kind::Response,
        Kind::Any => Kind::Request,
        kind => kind,
    };
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let config = httparse::ParserConfig::default();
    if kind == Kind::Response {
        let mut response = httparse::Response::new(&mut []);
        match config.parse_response_with_uninit_headers(&mut response, data, &mut headers) {
            Ok(httparse::Status::Complete(used)) => {
                let (Some(status), Some(body)) = (response.code, framing(response.headers)) else {
                    return Parsed::Error;
                };
                Parsed::Done(used, Message::Response { status, body })
            }
            Ok(httparse::Status::Partial) => Parsed::Partial,
            Err(_) => Parsed::Error,
        }
    } else {
        let mut request = httparse::Request::new(&mut []);
        match config.parse_request_with_uninit_headers(&mut request, data, &mut headers) {
            Ok(httparse::Status::Complete(used)) => {
                let (Some(method), Some(target), Some(body)) =
                    (request.method, request.path, framing(request.headers))
                else {
                    return Parsed::Error;
                };
                Parsed::Done(
                    used,
                    Message::Request {
                        method: method.to_owned(),
                        target: target.to_owned(),
                        host: host_header(request.headers),
                        body,
                        simple: false,
                    },
                )
            }
            Ok(httparse::Status::Partial) => Parsed::Partial,
            Err(_) => loose_request(data),
        }
    }
}

/// The first `Host` header's value.
fn host_header(headers: &[httparse::Header<'_>]) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
}

/// A request head httparse refuses for its version, which servers still answer (Wireshark
/// counts it): a known method, a space, a target, and the rest of the line as the version,
/// missing (`GET /`: HTTP/0.9, the head is that line) or malformed (`HTTP/1.`, `HTTP/1.0.8`:
/// headers follow, parsed as usual).
fn loose_request(data: &[u8]) -> Parsed {
    let start = skip_newlines(data);
    let skipped = data.len() - start.len();
    let eol = start.iter().position(|&b| b == b'\n');
    let line = &start[..eol.unwrap_or(start.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Parsed::Error;
    };
    let version = parts.next();
    let visible = |b: &u8| b.is_ascii_graphic() || *b >= 0x80;
    let known = KNOWN_METHODS.contains(&method);
    if !known
        || target.is_empty()
        || !target.iter().all(visible)
        || !version
            .unwrap_or_default()
            .iter()
            .all(|b| visible(b) || *b == b' ')
    {
        return Parsed::Error;
    }
    let Some(eol) = eol else {
        return Parsed::Partial;
    };
    let after = skipped + eol + 1;
    let request = |host, body, simple| Message::Request {
        method: String::from_utf8_lossy(method).into_owned(),
        target: String::from_utf8_lossy(target).into_owned(),
        host,
        body,
        simple,
    };
    if version.is_none() {
        return Parsed::Done(after, request(None, Framing::None, true));
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(&data[after..], &mut headers) {
        Ok(httparse::Status::Complete((used, headers))) => match framing(headers) {
            Some(body) => Parsed::Done(after + used, request(host_header(headers), body, false)),
            None => Parsed::Error,
        },
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => Parsed::Error,
    }
}

/// The body framing the headers announce; `None` when they contradict themselves.
fn framing(headers: &[httparse::Header<'_>]) -> Option<Framing> {
    let mut length = None;
    let mut coding: Option<&[u8]> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            // A list of equal values is allowed (RFC 9110 8.6); different values are not.
            for value in h.value.split(|&b| b == b',') {
                let n = parse_length(value.trim_ascii())?;
                if length.is_some_and(|old| old != n) {
                    return None;
                }
                length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding counts; later headers append to earlier ones.
            if let Some(last) = h.value.rsplit(|&b| b == b',').next() {
                coding = Some(last.trim_ascii());
            }
        }
    }
    Some(match (coding, length) {
        (Some(c), _) if c.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
        (Some(_), _) => Framing::OtherCoding,
        (None, Some(n)) => Framing::Length(n),
        (None, None) => Framing::None,
    })
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds chunks (`|` marks a segment start) to both directions of one connection, the
    /// client being end 0; returns the reports as short strings.
    fn run(chunks: &[(usize, &str)]) -> (Vec<String>, Counters) {
        let ends = [
            (IpAddr::from([10, 0, 0, 1]), 40000),
            (IpAddr::from([10, 0, 0, 2]), 80),
        ];
        let mut shared = Shared::new(ends);
        let mut dirs = [HttpDir::default(), HttpDir::default()];
        let limits = Limits::default();
        let mut counters = Counters::default();
        let mut out = Vec::new();
        for (i, &(dir, text)) in chunks.iter().enumerate() {
            let mut ctx = Ctx {
                dir,
                time_us: i64::try_from(i).unwrap(),
                shared: &mut shared,
                limits: &limits,
                counters: &mut counters,
                out: &mut out,
            };
            let delivery = match text.strip_prefix("gap ") {
                Some(n) => Delivery::Gap(n.parse().unwrap()),
                None => Delivery::Data {
                    bytes: text.trim_start_matches('|').as_bytes(),
                    segment_start: text.starts_with('|'),
                },
            };
            dirs[dir].deliver(delivery, &mut ctx);
        }
        let seen = out
            .into_iter()
            .map(|s| match s {
                Seen::Request(r) => format!("{}:{} {}", r.time_us, r.method, r.target),
                Seen::Response(r) => format!("{}:{} {:?}", r.time_us, r.status, r.bytes),
            })
            .collect();
        (seen, counters)
    }

    #[test]
    fn pipelined_requests_with_bodies() {
        let (seen, c) = run(&[(
            0,
            "|GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloPUT /c HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /d HTTP/1.1\r\n\r\n",
        )]);
        assert_eq!(seen, ["0:GET /a", "0:POST /b", "0:PUT /c", "0:GET /d"]);
        assert_eq!((c.requests, c.http_errors, c.resyncs), (4, 0, 0));
    }

    #[test]
    fn a_head_split_across_segments_is_timed_by_its_last_one() {
        let (seen, _) = run(&[
            (0, "|GE"),
            (0, "|T /split HTTP/1.1\r"),
            (0, "|\nHost: x\r\n\r"),
            (0, "|\nGET /next HTTP/1.1\r\n\r\n"),
        ]);
        assert_eq!(seen, ["3:GET /split", "3:GET /next"]);
    }

    #[test]
    fn responses_line_up_with_head_requests_and_bodiless_statuses() {
        let (seen, c) = run(&[
            (0, "|HEAD /h HTTP/1.1\r\n\r\nGET /g HTTP/1.1\r\n\r\nGET /n HTTP/1.1\r\n\r\n"),
            (1, "|HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
            (1, "|HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"),
            (1, "|HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
        ]);
        assert_eq!(
            seen,
            [
                "0:HEAD /h",
                "0:GET /g",
                "0:GET /n",
                "1:200 Some(0)",
                "2:304 Some(0)",
                "3:200 None"
            ]
        );
        assert_eq!(c.responses, 3);
    }

    #[test]
    fn garbage_then_a_segment_starting_with_a_request() {
        let (seen, c) = run(&[
            (0, "|\u{16}\u{3}\u{1} tls hello"),
            (0, "|more garbage\r\n\r\n"),
            (0, "|GET /ok HTTP/1.1\r\n\r\n"),
        ]);
        assert_eq!(seen, ["2:GET /ok"]);
        assert_eq!(c.http_errors, 0, "never taken for a head: no error");
    }

    #[test]
    fn a_bad_head_resynchronizes_on_the_next_segment_start() {
        let (seen, c) = run(&[
            (0, "|GET /a HTTP/1.1\r\nBad Header\r\n\r\n"),
            (0, "|GET /b HTTP/1.1\r\n\r\n"),
        ]);
        assert_eq!(seen, ["1:GET /b"]);
        assert_eq!((c.http_errors, c.resyncs), (1, 1));
    }

    #[test]
    fn a_gap_inside_a_body_keeps_sync_and_one_at_a_head_loses_it() {
        let (seen, c) = run(&[
            (0, "|POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\nab"),
            (0, "gap 5"),
            (0, "|cdeGET /b HTTP/1.1\r\n\r\n"),
            (0, "gap 3"),
            (0, "T /c HTTP/1.1\r\n\r\n"),
            (0, "|GET /d HTTP/1.1\r\n\r\n"),
        ]);
        assert_eq!(seen, ["0:POST /a", "2:GET /b", "5:GET /d"]);
        assert_eq!(c.resyncs, 1);
    }

    #[test]
    fn an_oversized_head_is_dropped() {
        let long = format!("|GET /{} HTTP/1.1\r\n\r\n", "x".repeat(20_000));
        let (seen, c) = run(&[(0, &long), (0, "|GET /ok HTTP/1.1\r\n\r\n")]);
        assert_eq!(seen.len(), 1, "only the short one");
        assert_eq!(seen[0], "1:GET /ok");
        assert_eq!(c.http_errors, 1);
    }

    #[test]
    fn contradicting_lengths_are_garbage() {
        assert!(framing(&[
            httparse::Header {
                name: "Content-Length",
                value: b"3"
            },
            httparse::Header {
                name: "content-length",
                value: b"4"
            },
        ])
        .is_none());
        assert_eq!(
            framing(&[httparse::Header {
                name: "Content-Length",
                value: b"7, 7"
            }]),
            Some(Framing::Length(7))
        );
        assert_eq!(
            framing(&[
                httparse::Header {
                    name: "Transfer-Encoding",
                    value: b"gzip, chunked"
                },
                httparse::Header {
                    name: "Content-Length",
                    value: b"7"
                },
            ]),
            Some(Framing::Chunked)
        );
        assert!(framing(&[httparse::Header {
            name: "Content-Length",
            value: b"-1"
        }])
        .is_none());
    }

    #[test]
    fn an_upgrade_turns_both_directions_into_a_tunnel() {
        let (seen, _) = run(&[
            (
                0,
                "|GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            ),
            (
                1,
                "|HTTP/1.1 101 Switching Protocols\r\n\r\nGET /not-http HTTP/1.1\r\n\r\n",
            ),
            (0, "|GET /not-http HTTP/1.1\r\n\r\n"),
        ]);
        assert_eq!(seen, ["0:GET /ws", "1:101 None"]);
    }

    #[test]
    fn the_role_follows_the_first_head_whatever_the_ports() {
        // End 1 (port 80) sends the request here: it is the client after all.
        let (seen, _) = run(&[
            (1, "|GET /x HTTP/1.1\r\n\r\n"),
            (0, "|HTTP/1.1 204 No Content\r\n\r\n"),
        ]);
        assert_eq!(seen, ["0:GET /x", "1:204 Some(0)"]);
    }

    #[test]
    fn what_servers_answer_counts_whatever_the_version_or_the_method() {
        // Each a connection of its own: servers close after answering most of these.
        type Case<'a> = (&'a [(usize, &'a str)], &'a [&'a str]);
        let cases: [Case<'_>; 5] = [
            (
                &[
                    (0, "|GET / HTTP/1.\r\nHost: x\r\n\r\n"),
                    (
                        1,
                        "|HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad",
                    ),
                ],
                &["0:GET /", "1:400 Some(3)"],
            ),
            (
                &[
                    (0, "|GET /x HTTP/1.0.8\r\nHost: x\r\nAccept: */*\r\n\r\n"),
                    (1, "|HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
                ],
                &["0:GET /x", "1:400 Some(0)"],
            ),
            (
                // HTTP/0.9 after a keep-alive exchange: the answer is a bare body, no head.
                &[
                    (0, "|GET /a HTTP/1.1\r\nHost: x\r\n\r\n"),
                    (1, "|HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
                    (0, "|GET /\r\n\r\n"),
                    (1, "|<html>hello</html>"),
                ],
                &["0:GET /a", "1:200 Some(2)", "2:GET /"],
            ),
            (
                &[
                    (
                        0,
                        "|CONNECT example.com:443\r\nHost: example.com:443\r\n\r\n",
                    ),
                    (
                        1,
                        "|HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n",
                    ),
                ],
                &["0:CONNECT example.com:443", "1:405 Some(0)"],
            ),
            (
                // A web server that ignored the method and served its page: a proxy's 2xx to
                // CONNECT never has a body (RFC 9110 9.3.6), so this is no tunnel.
                &[
                    (0, "|CONNECT example.com:443 HTTP/1.1\r\n\r\n"),
                    (1, "|HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
                    (0, "|GET /after HTTP/1.1\r\n\r\n"),
                    (
                        1,
                        "|HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                    ),
                ],
                &[
                    "0:CONNECT example.com:443",
                    "1:200 Some(5)",
                    "2:GET /after",
                    "3:200 None",
                ],
            ),
        ];
        for (chunks, want) in cases {
            let (seen, c) = run(chunks);
            assert_eq!(seen, want, "{chunks:?}");
            assert_eq!((c.http_errors, c.resyncs), (0, 0), "{chunks:?}");
        }
    }

    #[test]
    fn unknown_methods_and_garbage_are_still_not_requests() {
        for line in [
            "|get / HTTP/1.\r\n\r\n",
            "|FOO / HTTP/1.\r\n\r\n",
            "|GET \r\n\r\n",
            "|GET /\u{7f} HTTP/1.\r\n\r\n",
            "|GET / HTTP/1.\u{1}\r\n\r\n",
        ] {
            let (seen, _) = run(&[(0, line)]);
            assert!(seen.is_empty(), "{line:?}: {seen:?}");
        }
    }

    #[test]
    fn a_proxy_tunnel_is_no_longer_parsed() {
        let (seen, c) = run(&[
            (
                0,
                "|CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            ),
            (1, "|HTTP/1.1 200 Connection established\r\n\r\n"),
            (0, "|\u{16}\u{3}\u{1}\u{2}\u{0}client hello"),
            (1, "|\u{16}\u{3}\u{3}\u{0}\u{7a}server hello"),
            (0, "|GET /inside HTTP/1.1\r\n\r\n"),
        ]);
        assert_eq!(seen, ["0:CONNECT example.com:443", "1:200 None"]);
        assert_eq!(c.http_errors, 0);
    }

    #[test]
    fn request_starts() {
        for yes in ["GET ", "G", "", "\r\nPOST /", "M-SEARCH *", "PROPFIND "] {
            assert!(may_start(yes.as_bytes(), Kind::Request), "{yes:?}");
        }
        for no in [
            "get /",
            " GET",
            "GET/",
            "HTTP/1.1 200",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ ",
        ] {
            assert!(!may_start(no.as_bytes(), Kind::Request), "{no:?}");
        }
        assert!(may_start(b"HTTP/1.1 200 OK", Kind::Response));
        assert!(may_start(b"HT", Kind::Response));
        assert!(!may_start(b"HTTP/2", Kind::Response));
        assert!(may_start(b"HTTP/1.1 200 OK", Kind::Any));
    }
}
