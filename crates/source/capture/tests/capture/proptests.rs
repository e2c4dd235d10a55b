//! Properties: any input never panics and never holds more than the limits allow; a valid
//! request stream cut at random, reordered within a window and partly retransmitted comes
//! out as exactly the requests that went in; keep-alive exchanges with every body framing
//! come out as exactly their requests and responses, lined up.

use banhammer_capture::{Limits, LinkType, Reassembler, Seen};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::support::{frame, Flags, Flow, Wire};

const SMALL: Limits = Limits {
    max_streams: 4,
    max_buffer: 600,
    max_head: 300,
    max_total: 3000,
};

/// Pieces that make the parsers go places.
const PIECES: [&[u8]; 12] = [
    b"GET / HTTP/1.1\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 101 Switching\r\n",
    b"HEAD /h HTTP/1.0\r\n",
    b"Host: a\r\n",
    b"Content-Length: 5\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"\r\n",
    b"5\r\nhello\r\n",
    b"0\r\n\r\n",
    b"hello",
    b"\xff\x00 junk",
];

fn wire() -> impl Strategy<Value = Wire> {
    prop::sample::select(Wire::ALL.to_vec())
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(prop::sample::select(PIECES.to_vec()), 0..8).prop_map(|p| p.concat()),
        vec(any::<u8>(), 0..400),
    ]
}

/// A TCP segment on one of a few connections, near their sequence numbers, any flags.
fn segment() -> impl Strategy<Value = (LinkType, Vec<u8>)> {
    (
        wire(),
        0..6u16,
        any::<bool>(),
        0..3000u32,
        any::<[bool; 4]>(),
        payload(),
    )
        .prop_map(
            |(wire, conn, from_client, at, [syn, fin, rst, ack], payload)| {
                let client = format!("10.0.0.{conn}:4000{conn}").parse().unwrap();
                let server = "10.0.0.99:80".parse().unwrap();
                let (src, dst) = if from_client {
                    (client, server)
                } else {
                    (server, client)
                };
                let flags = Flags {
                    syn,
                    fin,
                    rst: rst && at % 7 == 0,
                    ack: ack.then_some(1000 + (at * 7) % 3000),
                };
                (
                    wire.link(),
                    frame(wire, src, dst, 1000 + at, flags, &payload),
                )
            },
        )
}

fn packet() -> impl Strategy<Value = (LinkType, Vec<u8>)> {
    prop_oneof![
        (
            prop::sample::select(LinkType::ALL.to_vec()),
            vec(any::<u8>(), 0..300)
        ),
        segment(),
    ]
}

/// One request as sent, and what the capture must report for it.
#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    target: String,
    host: Option<String>,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Length(Vec<u8>),
    Chunked(Vec<Vec<u8>>),
}

impl Request {
    fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        if let Some(host) = &self.host {
            out.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
        }
        out.extend_from_slice(b"Accept: */*\r\n");
        match &self.body {
            Body::None => out.extend_from_slice(b"\r\n"),
            Body::Length(body) => {
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                out.extend_from_slice(body);
            }
            Body::Chunked(chunks) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for c in chunks {
                    out.extend_from_slice(format!("{:x};ext=1\r\n", c.len()).as_bytes());
                    out.extend_from_slice(c);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\nTrailer: t\r\n\r\n");
            }
        }
        out
    }

    fn expected(&self) -> String {
        format!("{} {} {:?}", self.method, self.target, self.host)
    }
}

fn request() -> impl Strategy<Value = Request> {
    let method = prop::sample::select(vec![
        "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS",
    ]);
    let target = "/[a-z0-9/._-]{0,30}(\\?[a-z0-9=&]{1,20})?";
    let host = prop::option::of("[a-z]{1,10}\\.example(:[0-9]{2,4})?");
    // Bodies hold anything, heads included: they must be skipped, not parsed.
    let bytes = || {
        prop_oneof![
            vec(any::<u8>(), 0..120),
            Just(b"GET /inside-a-body HTTP/1.1\r\n\r\n".to_vec())
        ]
    };
    let body = prop_oneof![
        Just(Body::None),
        bytes().prop_map(Body::Length),
        vec(
            bytes().prop_filter("a chunk is not empty", |c| !c.is_empty()),
            0..4
        )
        .prop_map(Body::Chunked),
    ];
    (method, target, host, body).prop_map(|(method, target, host, body)| Request {
        method,
        target,
        host,
        body,
    })
}

/// A response as sent to its request, and what the capture must report for it.
#[derive(Debug, Clone)]
struct Response {
    status: u16,
    /// `None`: chunked.
    length: Option<usize>,
    /// A `100 Continue` goes first.
    interim: bool,
}

impl Response {
    fn bytes(&self, to_head: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if self.interim {
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        out.extend_from_slice(
            format!("HTTP/1.1 {} Whatever\r\nServer: t\r\n", self.status).as_bytes(),
        );
        let bodiless = to_head || self.status == 204 || self.status == 304;
        match self.length {
            Some(n) => {
                out.extend_from_slice(format!("Content-Length: {n}\r\n\r\n").as_bytes());
                if !bodiless {
                    out.extend(std::iter::repeat_n(b'H', n));
                }
            }
            None => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                if !bodiless {
                    out.extend_from_slice(b"3\r\nHTT\r\n10\r\nP/1.1 200 OK\r\n\r\n\r\n0\r\n\r\n");
                }
            }
        }
        out
    }

    fn expected(&self, to_head: bool) -> String {
        let bodiless = to_head || self.status == 204 || self.status == 304;
        match (bodiless, self.length) {
            (true, _) => format!("{} Some(0)", self.status),
            (false, length) => format!("{} {:?}", self.status, length.map(|n| n as u64)),
        }
    }
}

fn response() -> impl Strategy<Value = Response> {
    (
        prop::sample::select(vec![200u16, 201, 204, 301, 304, 404, 500]),
        prop::option::weighted(0.7, 0..3000usize),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(status, length, interim)| Response {
            status,
            length,
            interim,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_packets_never_panic_nor_exceed_the_limits(packets in vec(packet(), 1..60)) {
        let mut r = Reassembler::new(SMALL);
        let mut out = Vec::new();
        for (i, (link, data)) in packets.iter().enumerate() {
            r.packet(i64::try_from(i).unwrap() * 10_000_000, *link, data, &mut out);
            prop_assert!(r.streams() <= SMALL.max_streams);
            prop_assert!(r.buffered() <= SMALL.max_total);
            prop_assert!(r.buffered() <= r.streams() * 2 * (SMALL.max_buffer + SMALL.max_head));
        }
        prop_assert_eq!(r.counters().packets, packets.len() as u64);
    }

    #[test]
    fn cut_reordered_and_retransmitted_requests_come_out_exactly(
        requests in vec(request(), 1..12),
        sizes in vec(1..300usize, 1..40),
        jitter in vec(0..5usize, 200),
        resend in vec(any::<prop::sample::Index>(), 0..6),
        isn in any::<u32>(),
        wire in wire(),
    ) {
        let stream: Vec<u8> = requests.iter().flat_map(Request::bytes).collect();
        let mut flow = Flow::new(wire, "[2001:db8::1]:50123", "[2001:db8::2]:8080").isn(isn, 7);
        let mut packets = flow.handshake();
        // Cut the stream at the given sizes (cycled), then let each segment arrive up to
        // four places late: a bounded reordering window.
        let mut segments = Vec::new();
        let mut at = 0;
        for (i, size) in sizes.iter().cycle().enumerate() {
            if at == stream.len() {
                break;
            }
            let end = (at + size).min(stream.len());
            segments.push((i + jitter[i % jitter.len()], flow.client(&stream[at..end])));
            at = end;
        }
        for r in &resend {
            let (key, seg) = r.get(&segments).clone();
            segments.push((key + 3, seg));
        }
        segments.sort_by_key(|(key, _)| *key);
        packets.extend(segments.into_iter().map(|(_, p)| p));

        let mut reassembler = Reassembler::new(Limits::default());
        let mut out = Vec::new();
        for p in &packets {
            reassembler.packet(p.time_us, wire.link(), &p.data, &mut out);
        }
        let got: Vec<String> = out
            .iter()
            .map(|s| match s {
                Seen::Request(r) => format!("{} {} {:?}", r.method, r.target, r.host),
                Seen::Response(r) => format!("response {}", r.status),
            })
            .collect();
        let want: Vec<String> = requests.iter().map(Request::expected).collect();
        prop_assert_eq!(got, want);
        let c = reassembler.counters();
        prop_assert_eq!((c.gaps, c.resyncs, c.http_errors), (0, 0, 0));
    }

    #[test]
    fn keep_alive_exchanges_line_up_whatever_the_framing(
        exchanges in vec((request(), response()), 1..10),
        client_size in 1..200usize,
        server_size in 1..1500usize,
        wire in wire(),
    ) {
        let mut flow = Flow::new(wire, "192.0.2.1:45000", "192.0.2.2:8080");
        let mut packets = flow.handshake();
        let mut want = Vec::new();
        for (request, response) in &exchanges {
            packets.extend(flow.client_split(&request.bytes(), client_size));
            let to_head = request.method == "HEAD";
            packets.extend(flow.server_split(&response.bytes(to_head), server_size));
            want.push(format!("{} {}", request.method, request.target));
            want.push(response.expected(to_head));
        }
        packets.extend(flow.close());
        let mut reassembler = Reassembler::new(Limits::default());
        let mut out = Vec::new();
        for p in &packets {
            reassembler.packet(p.time_us, wire.link(), &p.data, &mut out);
        }
        let got: Vec<String> = out
            .iter()
            .map(|s| match s {
                Seen::Request(r) => format!("{} {}", r.method, r.target),
                Seen::Response(r) => format!("{} {:?}", r.status, r.bytes),
            })
            .collect();
        prop_assert_eq!(got, want);
        let c = reassembler.counters();
        prop_assert_eq!((c.gaps, c.resyncs, c.http_errors, c.streams_closed), (0, 0, 0, 1));
    }
}
