//! A real capture: an HTTP/1.1 server and client on loopback, captured with libpcap.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use banhammer_capture::{open_live, Limits, LinkType, Seen};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const CONNECTIONS: usize = 5;
const PER_CONNECTION: usize = 10;
const SECTIONS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// Answers every request on a keep-alive connection until the client closes it.
fn serve(stream: TcpStream) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            return;
        }
        if line == "\r\n" {
            writer.write_all(RESPONSE).unwrap();
        }
    }
}

#[test]
fn http_on_lo_is_captured_request_by_request() {
    loopback_traffic("lo", LinkType::Ethernet);
}

/// `any` gives Linux cooked headers, with the loopback hardware type for `lo`.
#[test]
fn http_on_any_is_captured_request_by_request() {
    loopback_traffic("any", LinkType::LinuxSll);
}

/// Captures 50 requests over 5 keep-alive connections to a server on 127.0.0.1.
fn loopback_traffic(interface: &str, link: LinkType) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // CI runs as root: a permission error fails the test rather than skipping it.
    let mut capture = open_live(interface, &format!("tcp port {port}"), Limits::default())
        .expect("capturing needs root or CAP_NET_RAW");
    assert_eq!(capture.link_type(), link);
    // Nothing to read yet: the read returns after its timeout all the same.
    let mut seen = Vec::new();
    capture.next_batch(&mut seen).unwrap();
    assert!(seen.is_empty());
    let server = thread::spawn(move || {
        let mut handlers = Vec::new();
        for _ in 0..CONNECTIONS {
            let (stream, _) = listener.accept().unwrap();
            handlers.push(thread::spawn(move || serve(stream)));
        }
        for h in handlers {
            h.join().unwrap();
        }
    });

    let mut sent = Vec::new();
    for c in 0..CONNECTIONS {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // `write!` writes piece by piece: without Nagle each piece leaves as it is written,
        // so request heads arrive split across segments (about 550 packets in all).
        stream.set_nodelay(true).unwrap();
        for r in 0..PER_CONNECTION {
            let n = c * PER_CONNECTION + r;
            let section = SECTIONS[n % SECTIONS.len()];
            let target = format!("/{section}/{}", n % SECTIONS.len() + 1);
            write!(
                stream,
                "GET {target}?n={n} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"
            )
            .unwrap();
            let mut response = [0; RESPONSE.len()];
            stream.read_exact(&mut response).unwrap();
            assert_eq!(&response[..], RESPONSE);
            sent.push(format!("{target}?n={n}"));
        }
    }
    server.join().unwrap();

    // Read until everything came, or 10 s of nothing (100 read timeouts of 100 ms).
    let mut idle = 0;
    let count = |seen: &[Seen]| {
        let requests = seen
            .iter()
            .filter(|s| matches!(s, Seen::Request(_)))
            .count();
        (requests, seen.len() - requests)
    };
    while count(&seen) != (50, 50) && idle < 100 {
        let before = seen.len();
        capture.next_batch(&mut seen).unwrap();
        if seen.len() == before {
            idle += 1;
        }
    }

    let mut targets = Vec::new();
    let mut per_section = BTreeMap::new();
    let mut statuses = Vec::new();
    for s in &seen {
        match s {
            Seen::Request(r) => {
                assert_eq!((r.method.as_str(), r.server_port), ("GET", port));
                assert_eq!(
                    r.host.as_deref(),
                    Some(format!("localhost:{port}").as_str())
                );
                assert!(r.client.is_loopback() && r.server.is_loopback());
                let section = r.target.split('/').nth(1).unwrap().to_owned();
                *per_section.entry(section).or_insert(0) += 1;
                targets.push(r.target.clone());
            }
            Seen::Response(r) => statuses.push((r.status, r.bytes)),
        }
    }
    let c = *capture.counters();
    let stats = capture.stats().unwrap();
    assert_eq!(
        targets.len(),
        50,
        "requests seen: {targets:?}\n{c:?}\n{stats:?}"
    );
    targets.sort();
    sent.sort();
    assert_eq!(targets, sent);
    assert_eq!(
        per_section.into_iter().collect::<Vec<_>>(),
        SECTIONS.map(|s| (s.to_owned(), 10)).to_vec()
    );
    assert_eq!(statuses, vec![(200, Some(2)); 50]);
    assert_eq!(
        (c.gaps, c.http_errors, c.streams_closed),
        (0, 0, 5),
        "{c:?}"
    );
    assert!(stats.received >= c.packets, "{stats:?} {c:?}");
    assert_eq!(stats.dropped, 0);
}

#[test]
fn unknown_interfaces_and_bad_filters_are_errors() {
    use banhammer_capture::CaptureError;
    let err = open_live("no-such-if0", "", Limits::default()).unwrap_err();
    assert!(matches!(err, CaptureError::Open { .. }), "{err}");
    assert!(err.to_string().contains("no-such-if0"), "{err}");
    let err = open_live("lo", "tcp port banana", Limits::default()).unwrap_err();
    assert!(matches!(err, CaptureError::Filter { .. }), "{err}");
}
