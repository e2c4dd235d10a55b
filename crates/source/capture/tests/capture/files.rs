//! pcap and pcapng files read back through libpcap: link types, packet time, errors.

use banhammer_capture::{open_file, CaptureError, Limits, LinkType, Seen};

use crate::support::files::{write_pcap, write_pcapng};
use crate::support::{get, ok, short, Flow, Pkt, Wire};

/// A few keep-alive exchanges on two connections, one of them IPv6.
fn traffic(wire: Wire) -> Vec<Pkt> {
    let mut a = Flow::new(wire, "192.0.2.1:40000", "192.0.2.2:80");
    let mut b = Flow::new(wire, "[2001:db8::1]:40001", "[2001:db8::2]:80");
    b.time_us += 500;
    let mut packets = a.handshake();
    packets.extend(b.handshake());
    for i in 0..3 {
        packets.push(a.client(&get(&format!("/a/{i}"))));
        packets.push(b.client(&get(&format!("/b/{i}"))));
        packets.push(a.server(&ok("a")));
        packets.push(b.server(&ok("bb")));
    }
    packets.extend(a.close());
    packets.extend(b.close());
    packets.sort_by_key(|p| p.time_us);
    packets
}

fn read_all(path: &std::path::Path) -> (Vec<Seen>, LinkType, u64) {
    let mut capture = open_file(path, Limits::default()).unwrap();
    let mut seen = Vec::new();
    while capture.next_batch(&mut seen).unwrap() {}
    (seen, capture.link_type(), capture.counters().packets)
}

#[test]
fn pcap_and_pcapng_files_of_every_link_type() {
    let dir = tempfile::tempdir().unwrap();
    for wire in Wire::ALL {
        let packets = traffic(wire);
        let pcap = dir.path().join("t.pcap");
        let pcapng = dir.path().join("t.pcapng");
        write_pcap(&pcap, wire.link(), &packets);
        write_pcapng(&pcapng, wire.link(), &packets);
        for path in [&pcap, &pcapng] {
            let (seen, link, count) = read_all(path);
            assert_eq!(link, wire.link(), "{wire:?} {}", path.display());
            assert_eq!(count, packets.len() as u64);
            let mut a: Vec<String> = Vec::new();
            let mut b: Vec<String> = Vec::new();
            for (s, text) in seen.iter().zip(short(&seen)) {
                let client = match s {
                    Seen::Request(r) => r.client,
                    Seen::Response(r) => r.client,
                };
                if client.is_ipv4() {
                    a.push(text)
                } else {
                    b.push(text)
                }
            }
            assert_eq!(
                a,
                ["GET /a/0", "200 1", "GET /a/1", "200 1", "GET /a/2", "200 1"],
                "{wire:?}"
            );
            assert_eq!(
                b,
                ["GET /b/0", "200 2", "GET /b/1", "200 2", "GET /b/2", "200 2"],
                "{wire:?}"
            );
        }
    }
}

#[test]
fn packet_time_is_file_time_to_the_microsecond() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Flow::new(Wire::Ethernet, "192.0.2.1:40000", "192.0.2.2:80");
    f.time_us = 1_546_271_816_123_456;
    let mut packets = f.handshake();
    packets.push(f.client(&get("/timed")));
    packets.push(f.server(&ok("")));
    let want: Vec<i64> = packets[3..].iter().map(|p| p.time_us).collect();
    for (name, write) in [
        ("t.pcap", write_pcap as fn(&_, _, &_)),
        ("t.pcapng", write_pcapng),
    ] {
        let path = dir.path().join(name);
        write(&path, LinkType::Ethernet, &packets);
        let (seen, _, _) = read_all(&path);
        let got: Vec<i64> = seen
            .iter()
            .map(|s| match s {
                Seen::Request(r) => r.time_us,
                Seen::Response(r) => r.time_us,
            })
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn missing_files_bad_files_and_unsupported_link_types_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pcap");
    let err = open_file(&missing, Limits::default()).unwrap_err();
    assert!(matches!(err, CaptureError::File { .. }), "{err}");
    assert!(err.to_string().contains("missing.pcap"), "{err}");

    let garbage = dir.path().join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture file at all").unwrap();
    assert!(matches!(
        open_file(&garbage, Limits::default()),
        Err(CaptureError::File { .. })
    ));

    // 802.11 radiotap (127) is not decoded.
    let wifi = dir.path().join("wifi.pcap");
    let header = pcap_file::pcap::PcapHeader {
        datalink: pcap_file::DataLink::IEEE802_11_RADIOTAP,
        ..Default::default()
    };
    pcap_file::pcap::PcapWriter::with_header(std::fs::File::create(&wifi).unwrap(), header)
        .unwrap();
    assert!(matches!(
        open_file(&wifi, Limits::default()),
        Err(CaptureError::LinkType(127))
    ));

    // A file cut in the middle of a packet: the packets before it, then an error.
    let cut = dir.path().join("cut.pcap");
    let mut f = Flow::new(Wire::Ethernet, "192.0.2.1:40000", "192.0.2.2:80");
    let mut packets = f.handshake();
    packets.push(f.client(&get("/before-the-cut")));
    packets.push(f.server(&ok("")));
    write_pcap(&cut, LinkType::Ethernet, &packets);
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let mut capture = open_file(&cut, Limits::default()).unwrap();
    let mut seen = Vec::new();
    let result = capture.next_batch(&mut seen);
    assert!(matches!(result, Err(CaptureError::Read(_))), "{result:?}");
    assert_eq!(short(&seen), ["GET /before-the-cut"]);
}

#[test]
fn a_bpf_filter_applies_to_a_file_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut web = Flow::new(Wire::Ethernet, "192.0.2.1:40000", "192.0.2.2:80");
    let mut api = Flow::new(Wire::Ethernet, "192.0.2.1:40001", "192.0.2.2:9000");
    let mut packets = web.handshake();
    packets.extend(api.handshake());
    packets.push(web.client(&get("/web")));
    packets.push(api.client(&get("/api")));
    packets.sort_by_key(|p| p.time_us);
    let path = dir.path().join("two-ports.pcap");
    write_pcap(&path, LinkType::Ethernet, &packets);

    let mut capture = open_file(&path, Limits::default()).unwrap();
    capture.set_filter("tcp port 9000").unwrap();
    let mut seen = Vec::new();
    while capture.next_batch(&mut seen).unwrap() {}
    assert_eq!(short(&seen), ["GET /api"]);
    assert_eq!(
        capture.counters().packets,
        4,
        "the filtered packets are not read"
    );

    let mut capture = open_file(&path, Limits::default()).unwrap();
    let err = capture.set_filter("tcp port").unwrap_err();
    assert!(matches!(err, CaptureError::Filter { .. }), "{err}");
}
