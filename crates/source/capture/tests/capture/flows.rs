//! Connections fed packet by packet to a `Reassembler` (no libpcap): splitting, pipelining,
//! keep-alive, every link type, reordering, loss, connections already open, garbage.

use banhammer_capture::{HttpRequest, HttpResponse, Limits, LinkType, Reassembler, Seen};

use crate::support::{feed, frame, get, ok, short, Flags, Flow, Pkt, Wire};

fn v4(wire: Wire) -> Flow {
    Flow::new(wire, "192.0.2.10:51000", "198.51.100.7:80")
}

fn v6(wire: Wire) -> Flow {
    Flow::new(wire, "[2001:db8::10]:51000", "[2001:db8::7]:8080")
}

#[test]
fn a_request_split_across_segments_is_reported_whole_at_its_last_segment() {
    let mut f = v4(Wire::Ethernet);
    let mut packets = f.handshake();
    packets.extend(f.client_split(&get("/pages/create?x=1"), 7));
    let last = packets.last().unwrap().time_us;
    packets.push(f.server(&ok("created")));
    let (seen, c) = feed(LinkType::Ethernet, &packets);
    assert_eq!(
        seen[0],
        Seen::Request(HttpRequest {
            time_us: last,
            client: "192.0.2.10".parse().unwrap(),
            client_port: 51000,
            server: "198.51.100.7".parse().unwrap(),
            server_port: 80,
            method: "GET".into(),
            target: "/pages/create?x=1".into(),
            host: Some("example.com".into()),
        })
    );
    assert_eq!(
        seen[1],
        Seen::Response(HttpResponse {
            time_us: packets.last().unwrap().time_us,
            client: "192.0.2.10".parse().unwrap(),
            server: "198.51.100.7".parse().unwrap(),
            status: 200,
            bytes: Some(7),
        })
    );
    assert_eq!(seen.len(), 2);
    assert_eq!((c.requests, c.responses, c.gaps, c.resyncs), (1, 1, 0, 0));
}

#[test]
fn pipelined_requests_in_one_segment_and_their_responses_in_another() {
    let mut f = v4(Wire::Ethernet);
    let mut packets = f.handshake();
    let requests = [
        get("/a/1"),
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nuser=alice&".to_vec(),
        get("/b/2"),
        b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n".to_vec(),
        get("/d"),
    ]
    .concat();
    packets.push(f.client(&requests));
    packets.push(f.server(&[ok("1"), ok("22"), ok(""), ok("4444"), ok("55555")].concat()));
    let (seen, _) = feed(LinkType::Ethernet, &packets);
    assert_eq!(
        short(&seen),
        [
            "GET /a/1",
            "POST /login",
            "GET /b/2",
            "PUT /c",
            "GET /d",
            "200 1",
            "200 2",
            "200 0",
            "200 4",
            "200 5"
        ]
    );
}

#[test]
fn keep_alive_responses_line_up_whatever_their_framing() {
    let mut f = v4(Wire::Ethernet);
    let mut packets = f.handshake();
    let mut exchange = |request: &[u8], response: &[&[u8]], packets: &mut Vec<Pkt>| {
        packets.push(f.client(request));
        for part in response {
            packets.push(f.server(part));
        }
    };
    exchange(&get("/1"), &[&ok("one")], &mut packets);
    exchange(
        b"HEAD /2 HTTP/1.1\r\n\r\n",
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"],
        &mut packets,
    );
    exchange(
        &get("/3"),
        &[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            b"lo\r\n1",
            b"0\r\n0123456789abcdef\r\n0\r\n\r\n",
        ],
        &mut packets,
    );
    exchange(
        &get("/4"),
        &[b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n"],
        &mut packets,
    );
    exchange(
        b"POST /5 HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        &[b"HTTP/1.1 100 Continue\r\n\r\n"],
        &mut packets,
    );
    exchange(
        b"abc",
        &[b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"],
        &mut packets,
    );
    exchange(
        &get("/6"),
        &[b"HTTP/1.1 204 No Content\r\n\r\n"],
        &mut packets,
    );
    exchange(&get("/7"), &[&ok("the end")], &mut packets);
    let (seen, c) = feed(LinkType::Ethernet, &packets);
    assert_eq!(
        short(&seen),
        [
            "GET /1", "200 3", "HEAD /2", "200 0", "GET /3", "200 -", "GET /4", "304 0", "POST /5",
            "201 0", "GET /6", "204 0", "GET /7", "200 7"
        ]
    );
    assert_eq!((c.http_errors, c.resyncs), (0, 0));
}

#[test]
fn every_link_type_with_ipv4_and_ipv6() {
    for wire in Wire::ALL {
        for mut f in [v4(wire), v6(wire)] {
            let mut packets = f.handshake();
            packets.push(f.client(&get("/x/1")));
            packets.push(f.server(&ok("hi")));
            packets.extend(f.close());
            let (seen, c) = feed(wire.link(), &packets);
            assert_eq!(short(&seen), ["GET /x/1", "200 2"], "{wire:?} {}", f.client);
            let Seen::Request(r) = &seen[0] else {
                unreachable!()
            };
            assert_eq!((r.client, r.client_port), (f.client.ip(), f.client.port()));
            assert_eq!((r.server, r.server_port), (f.server.ip(), f.server.port()));
            assert_eq!(
                (c.malformed, c.not_tcp, c.streams_closed),
                (0, 0, 1),
                "{wire:?}"
            );
        }
    }
}

#[test]
fn out_of_order_and_retransmitted_segments_are_delivered_once_in_order() {
    let mut f = v4(Wire::Raw);
    let mut packets = f.handshake();
    let first = f.client_split(&get("/first"), 10);
    let second = f.client(&get("/second"));
    // 3 1 0 2 … with a duplicate of 1 and of the whole of 0, and a segment overlapping 1 and 2.
    let order = [3, 1, 0, 1, 2, 0];
    packets.extend(order.iter().map(|&i| first[i].clone()));
    packets.extend(first[4..].iter().cloned());
    packets.push(second.clone());
    packets.push(second);
    let (seen, c) = feed(LinkType::RawIp, &packets);
    assert_eq!(short(&seen), ["GET /first", "GET /second"]);
    assert!(c.out_of_order >= 2, "{c:?}");
    assert!(c.retransmitted >= 3, "{c:?}");

    // Overlapping retransmissions with different boundaries.
    let mut f = v4(Wire::Raw);
    let mut packets = f.handshake();
    let start = f.client_seq;
    let bytes = [get("/a"), get("/b")].concat();
    let at = |f: &mut Flow, from: usize, to: usize| {
        let seq = start.wrapping_add(from as u32);
        Pkt {
            time_us: 0,
            data: frame(
                Wire::Raw,
                f.client,
                f.server,
                seq,
                Flags::default(),
                &bytes[from..to],
            ),
        }
    };
    packets.push(at(&mut f, 20, 60));
    packets.push(at(&mut f, 0, 30));
    packets.push(at(&mut f, 10, 70));
    packets.push(at(&mut f, 50, bytes.len()));
    let (seen, _) = feed(LinkType::RawIp, &packets);
    assert_eq!(short(&seen), ["GET /a", "GET /b"]);
}

#[test]
fn sequence_numbers_wrap_around() {
    for (c, s) in [(u32::MAX - 20, u32::MAX - 3), (u32::MAX, u32::MAX - 60)] {
        let mut f = v4(Wire::Ethernet).isn(c, s);
        let mut packets = f.handshake();
        for i in 0..4 {
            let mut part = f.client_split(&get(&format!("/wrap/{i}")), 9);
            part.swap(0, 1);
            packets.extend(part);
            packets.push(f.server(&ok("wrapped")));
        }
        let (seen, c) = feed(LinkType::Ethernet, &packets);
        assert_eq!(
            short(&seen),
            [
                "GET /wrap/0",
                "200 7",
                "GET /wrap/1",
                "200 7",
                "GET /wrap/2",
                "200 7",
                "GET /wrap/3",
                "200 7"
            ]
        );
        assert_eq!(c.gaps, 0);
    }
}

#[test]
fn a_connection_open_before_the_capture_is_picked_up_at_the_next_head() {
    // No handshake: the capture starts inside a POST body and inside a response body.
    let mut f = v4(Wire::Ethernet);
    let packets = vec![
        f.client(b"e=1&f=2 still the body of an earlier POST"),
        f.server(b"</html> end of an earlier response"),
        f.client(&get("/after")),
        f.server(&ok("fine")),
        f.client(&get("/again")),
        f.server(&ok("")),
    ];
    let (seen, c) = feed(LinkType::Ethernet, &packets);
    assert_eq!(short(&seen), ["GET /after", "200 4", "GET /again", "200 0"]);
    assert_eq!(c.http_errors, 0);

    // Starting exactly at a head works at once, and the server can be on any port.
    let mut f = Flow::new(Wire::Ethernet, "10.1.1.1:80", "10.2.2.2:50000");
    let packets = vec![f.client(&get("/high-port-server")), f.server(&ok("x"))];
    let (seen, _) = feed(LinkType::Ethernet, &packets);
    let Seen::Request(r) = &seen[0] else {
        panic!("{seen:?}")
    };
    assert_eq!((r.client_port, r.server_port), (80, 50000));
    let Seen::Response(r) = &seen[1] else {
        panic!("{seen:?}")
    };
    assert_eq!(r.server, "10.2.2.2".parse::<std::net::IpAddr>().unwrap());
}

#[test]
fn a_lost_packet_is_a_gap_and_the_stream_resynchronizes_on_the_next_request() {
    let mut f = v4(Wire::Ethernet);
    let mut packets = f.handshake();
    let mut lost = f.client_split(&get("/lost"), 20);
    lost.remove(1);
    packets.extend(lost);
    packets.push(f.server(&ok("for the lost one")));
    packets.push(f.client(&get("/next")));
    // The server's acknowledgment shows the hole will never fill.
    packets.push(f.server(&ok("for the next one")));
    packets.push(f.client(&get("/last")));
    let (seen, c) = feed(LinkType::Ethernet, &packets);
    assert_eq!(short(&seen), ["200 16", "GET /next", "200 16", "GET /last"]);
    assert_eq!(c.gaps, 1);

    // A packet lost inside a body with a known length keeps the stream in sync.
    let mut f = v4(Wire::Ethernet);
    let mut packets = f.handshake();
    packets.push(f.client(&get("/big")));
    let body = "x".repeat(3000);
    let mut response = f.server_split(&ok(&body), 1000);
    response.remove(2);
    packets.extend(response);
    packets.push(f.client(&get("/small")));
    packets.push(f.server(&ok("s")));
    packets.push(f.client(&get("/ack-for-the-gap")));
    let (seen, c) = feed(LinkType::Ethernet, &packets);
    assert_eq!(
        short(&seen),
        [
            "GET /big",
            "200 3000",
            "GET /small",
            "200 1",
            "GET /ack-for-the-gap"
        ]
    );
    assert_eq!((c.gaps, c.resyncs), (1, 0));
}

#[test]
fn an_oversized_head_split_across_segments_is_skipped() {
    let mut f = v4(Wire::Raw);
    let mut packets = f.handshake();
    let huge = format!("GET /{} HTTP/1.1\r\n\r\n", "y".repeat(40_000));
    packets.extend(f.client_split(huge.as_bytes(), 1400));
    packets.push(f.client(&get("/fine")));
    let (seen, c) = feed(LinkType::RawIp, &packets);
    assert_eq!(short(&seen), ["GET /fine"]);
    assert_eq!(c.http_errors, 1);
}

#[test]
fn garbage_payloads_and_truncated_packets_never_panic() {
    let mut f = v4(Wire::Ethernet);
    let mut packets = f.handshake();
    packets.push(f.client(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS, not HTTP"));
    packets.push(f.server(b"HTTP/9.9 what\r\n\r\n"));
    packets.push(f.client(b"GET\r\n\r\n"));
    packets.push(f.client(b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n"));
    packets.push(f.client(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
    packets.push(f.client(&[0xff; 3000]));
    packets.push(f.client(&get("/survivor")));
    let (seen, c) = feed(LinkType::Ethernet, &packets);
    // The POST head is fine; its body is not.
    assert_eq!(short(&seen), ["POST /", "GET /survivor"]);
    // HTTP/9.9 never looked like a response head: skipped, not an error.
    assert_eq!(c.http_errors, 2, "Content-Length -5, chunk size zz");

    // Every prefix of every packet of a whole exchange, for every link type.
    for wire in Wire::ALL {
        for mut f in [v4(wire), v6(wire)] {
            let mut packets = f.handshake();
            packets.push(f.client(&get("/t")));
            packets.push(f.server(&ok("t")));
            let mut r = Reassembler::new(Limits::default());
            let mut out = Vec::new();
            for p in &packets {
                for cut in 0..p.data.len() {
                    r.packet(p.time_us, wire.link(), &p.data[..cut], &mut out);
                }
            }
            assert!(
                r.counters().malformed > 0 && r.counters().truncated > 0,
                "{wire:?}"
            );
            // Decoded with the wrong link type: garbage, not a panic.
            for link in LinkType::ALL {
                for p in &packets {
                    r.packet(p.time_us, link, &p.data, &mut out);
                }
            }
        }
    }
}

#[test]
fn ip_fragments_and_other_protocols_are_counted_and_skipped() {
    let mut udp = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(53, 53)
        .write(&mut udp, b"dns")
        .unwrap();
    let mut f = v4(Wire::Raw);
    let mut fragment = f.client(&get("/frag")).data;
    fragment[6] = 0x20; // more fragments, offset 0
    let packets = [
        Pkt {
            time_us: 1,
            data: udp,
        },
        Pkt {
            time_us: 2,
            data: fragment,
        },
    ];
    let (seen, c) = feed(LinkType::RawIp, &packets);
    assert!(seen.is_empty());
    assert_eq!((c.not_tcp, c.fragments, c.packets), (1, 1, 2));
}

#[test]
fn streams_are_bounded_and_the_least_recently_active_go_first() {
    let limits = Limits {
        max_streams: 8,
        ..Limits::default()
    };
    let mut flows: Vec<Flow> = (0..20)
        .map(|i| Flow::new(Wire::Raw, &format!("10.0.0.{i}:40000"), "10.9.9.9:80"))
        .collect();
    let mut packets = Vec::new();
    for f in &mut flows {
        packets.push(f.client(b"GET /half"));
    }
    for f in &mut flows {
        packets.push(f.client(b" HTTP/1.1\r\n\r\n"));
    }
    let mut r = Reassembler::new(limits);
    let mut out = Vec::new();
    for p in &packets {
        r.packet(p.time_us, LinkType::RawIp, &p.data, &mut out);
        assert!(r.streams() <= 8);
    }
    // The second halves arrive after their connections were dropped: only the new
    // connections they open (whose first bytes are not a head) remain.
    assert!(out.is_empty());
    assert_eq!(r.counters().streams_dropped, 32);
    assert_eq!(r.counters().streams_opened, 40);
}

#[test]
fn idle_connections_expire_after_a_minute_of_packet_time() {
    let mut f = v4(Wire::Raw);
    let mut r = Reassembler::new(Limits::default());
    let mut out = Vec::new();
    let p = f.client(b"GET /slow");
    r.packet(p.time_us, LinkType::RawIp, &p.data, &mut out);
    r.expire(p.time_us + 59_000_000);
    assert_eq!(r.streams(), 1);
    r.expire(p.time_us + 61_000_000);
    assert_eq!((r.streams(), r.buffered()), (0, 0));
    assert_eq!(r.counters().streams_expired, 1);
}
