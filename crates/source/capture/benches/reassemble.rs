//! Packets per second through `Reassembler::packet` on a generated capture of many keep-alive
//! connections, against the same packets only sliced by etherparse (the floor: decoding
//! without flows, reassembly or HTTP), in the same run.

use std::hint::black_box;
use std::net::Ipv4Addr;

use banhammer_capture::{Limits, LinkType, Reassembler, Seen};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use etherparse::{LaxSlicedPacket, PacketBuilder};

const CONNECTIONS: u32 = 500;
const EXCHANGES: u32 = 20;

/// Builds one Ethernet/IPv4/TCP frame.
fn frame(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    ack: u32,
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, seq, 65535);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('F') {
        b = b.fin();
    }
    if flags.contains('A') {
        b = b.ack(ack);
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

/// A capture: `CONNECTIONS` keep-alive connections, interleaved, each with a handshake,
/// `EXCHANGES` browser-like requests and responses (one request in three split in two
/// segments, responses of 2–3 segments) and a close. Timestamps 10 µs apart.
fn capture() -> Vec<(i64, Vec<u8>)> {
    let mut per_conn: Vec<Vec<Vec<u8>>> = Vec::new();
    for c in 0..CONNECTIONS {
        let client = (
            Ipv4Addr::from(0x0a00_0000 + c),
            40_000 + (c % 20_000) as u16,
        );
        let server = (Ipv4Addr::new(192, 0, 2, 80), 80);
        let (mut cs, mut ss) = (c.wrapping_mul(2_654_435_761), c.wrapping_mul(40_503));
        let mut p = vec![
            frame(client, server, cs, 0, "S", b""),
            frame(server, client, ss, cs + 1, "SA", b""),
        ];
        cs += 1;
        ss += 1;
        p.push(frame(client, server, cs, ss, "A", b""));
        for e in 0..EXCHANGES {
            let request = format!(
                "GET /section{}/page{e}?id={c} HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/125.0\r\nAccept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nCookie: session=0123456789abcdef\r\n\r\n",
                e % 7
            );
            let parts: Vec<&[u8]> = if e % 3 == 0 {
                let (a, b) = request.as_bytes().split_at(100);
                vec![a, b]
            } else {
                vec![request.as_bytes()]
            };
            for part in parts {
                p.push(frame(client, server, cs, ss, "A", part));
                cs = cs.wrapping_add(part.len() as u32);
            }
            let body = vec![b'x'; 1000 + (e as usize * 97) % 2000];
            let mut response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nCache-Control: max-age=60\r\n\r\n",
                body.len()
            )
            .into_bytes();
            response.extend_from_slice(&body);
            for part in response.chunks(1448) {
                p.push(frame(server, client, ss, cs, "A", part));
                ss = ss.wrapping_add(part.len() as u32);
            }
            p.push(frame(client, server, cs, ss, "A", b""));
        }
        p.push(frame(client, server, cs, ss, "FA", b""));
        p.push(frame(server, client, ss, cs + 1, "FA", b""));
        p.push(frame(client, server, cs + 1, ss + 1, "A", b""));
        per_conn.push(p);
    }
    // Interleave: one packet of each connection in turn.
    let mut out = Vec::new();
    let longest = per_conn.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for p in &mut per_conn {
            if let Some(packet) = p.get_mut(i) {
                out.push((out.len() as i64 * 10, std::mem::take(packet)));
            }
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let packets = capture();
    let mut group = c.benchmark_group("reassemble");
    group.throughput(Throughput::Elements(packets.len() as u64));
    group.bench_with_input(
        BenchmarkId::new("etherparse_slice_only", packets.len()),
        &packets,
        |b, packets| {
            b.iter(|| {
                let mut tcp = 0usize;
                for (_, p) in packets {
                    if let Ok(s) = LaxSlicedPacket::from_ethernet(p) {
                        tcp += usize::from(s.transport.is_some());
                    }
                }
                black_box(tcp)
            });
        },
    );
    group.bench_with_input(
        BenchmarkId::new("reassembler", packets.len()),
        &packets,
        |b, packets| {
            let mut out: Vec<Seen> = Vec::with_capacity(2 * (CONNECTIONS * EXCHANGES) as usize);
            b.iter(|| {
                let mut r = Reassembler::new(Limits::default());
                out.clear();
                for (t, p) in packets {
                    r.packet(*t, LinkType::Ethernet, p, &mut out);
                }
                assert_eq!(out.len(), 2 * (CONNECTIONS * EXCHANGES) as usize);
                black_box(r.counters().packets)
            });
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
