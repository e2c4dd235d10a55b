//! Test fixtures: TCP connections framed for every link type (built with etherparse's
//! `PacketBuilder`), pcap and pcapng files written with `pcap-file`, and short renderings of
//! what the reassembler reports.

use std::net::{IpAddr, SocketAddr};

use banhammer_capture::{Counters, Limits, LinkType, Reassembler, Seen};
use etherparse::{
    ip_number, IpHeaders, Ipv4Extensions, Ipv4Header, Ipv6Extensions, Ipv6FlowLabel, Ipv6Header,
    Ipv6RawExtHeader, LinuxSllPacketType, PacketBuilder, PacketBuilderStep, TcpHeader, VlanId,
};

/// How packets are framed, link layer first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    Ethernet,
    /// Ethernet with one 802.1Q tag.
    Vlan,
    /// Ethernet with 802.1ad outer and 802.1Q inner tags.
    QinQ,
    Sll,
    Sll2,
    /// BSD loopback, family in little-endian (as on x86).
    Null,
    /// OpenBSD loopback, family in network order.
    Loop,
    Raw,
}

impl Wire {
    pub(crate) const ALL: [Wire; 8] = [
        Wire::Ethernet,
        Wire::Vlan,
        Wire::QinQ,
        Wire::Sll,
        Wire::Sll2,
        Wire::Null,
        Wire::Loop,
        Wire::Raw,
    ];

    pub(crate) fn link(self) -> LinkType {
        match self {
            Wire::Ethernet | Wire::Vlan | Wire::QinQ => LinkType::Ethernet,
            Wire::Sll => LinkType::LinuxSll,
            Wire::Sll2 => LinkType::LinuxSll2,
            Wire::Null => LinkType::Null,
            Wire::Loop => LinkType::Loop,
            Wire::Raw => LinkType::RawIp,
        }
    }
}

/// One captured packet.
#[derive(Debug, Clone)]
pub(crate) struct Pkt {
    pub(crate) time_us: i64,
    pub(crate) data: Vec<u8>,
}

/// TCP flags of a test segment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Flags {
    pub(crate) syn: bool,
    pub(crate) fin: bool,
    pub(crate) rst: bool,
    pub(crate) ack: Option<u32>,
}

/// Frames one TCP segment from `src` to `dst`.
pub(crate) fn frame(
    wire: Wire,
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    flags: Flags,
    payload: &[u8],
) -> Vec<u8> {
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpHeaders::Ipv4(
            Ipv4Header::new(0, 64, ip_number::TCP, s.octets(), d.octets()).unwrap(),
            Ipv4Extensions::default(),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
            Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: 0,
                next_header: ip_number::TCP,
                hop_limit: 64,
                source: s.octets(),
                destination: d.octets(),
            },
            // A hop-by-hop options header, so that the extension chain is walked.
            Ipv6Extensions {
                hop_by_hop_options: Some(
                    Ipv6RawExtHeader::new_raw(ip_number::TCP, &[1, 4, 0, 0, 0, 0]).unwrap(),
                ),
                ..Ipv6Extensions::default()
            },
        ),
        _ => panic!("mixed address families"),
    };
    let mut tcp = TcpHeader::new(src.port(), dst.port(), seq, 65535);
    tcp.syn = flags.syn;
    tcp.fin = flags.fin;
    tcp.rst = flags.rst;
    if let Some(ack) = flags.ack {
        tcp.ack = true;
        tcp.acknowledgment_number = ack;
    }
    let mac_a = [2, 0, 0, 0, 0, 1];
    let mac_b = [2, 0, 0, 0, 0, 2];
    let step: PacketBuilderStep<IpHeaders> = match wire {
        Wire::Ethernet => PacketBuilder::ethernet2(mac_a, mac_b).ip(ip),
        Wire::Vlan => PacketBuilder::ethernet2(mac_a, mac_b)
            .single_vlan(VlanId::try_new(42).unwrap())
            .ip(ip),
        Wire::QinQ => PacketBuilder::ethernet2(mac_a, mac_b)
            .double_vlan(VlanId::try_new(100).unwrap(), VlanId::try_new(7).unwrap())
            .ip(ip),
        Wire::Sll => {
            PacketBuilder::linux_sll(LinuxSllPacketType::HOST, 6, [2, 0, 0, 0, 0, 1, 0, 0]).ip(ip)
        }
        Wire::Sll2 | Wire::Null | Wire::Loop | Wire::Raw => PacketBuilder::ip(ip),
    };
    let mut packet = Vec::new();
    step.tcp_header(tcp).write(&mut packet, payload).unwrap();
    let v4 = src.is_ipv4();
    let prefix: Vec<u8> = match wire {
        Wire::Sll2 => {
            let protocol: u16 = if v4 { 0x0800 } else { 0x86dd };
            let mut h = protocol.to_be_bytes().to_vec();
            h.extend_from_slice(&[0, 0]); // reserved
            h.extend_from_slice(&1u32.to_be_bytes()); // interface index
            h.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
            h.extend_from_slice(&[0, 6]); // packet type, address length
            h.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]);
            h
        }
        Wire::Null => (if v4 { 2u32 } else { 30 }).to_le_bytes().to_vec(),
        Wire::Loop => (if v4 { 2u32 } else { 24 }).to_be_bytes().to_vec(),
        _ => Vec::new(),
    };
    [prefix, packet].concat()
}

/// Both directions of one TCP connection, with their next sequence numbers. Every packet
/// made is 1 ms after the previous one.
#[derive(Debug, Clone)]
pub(crate) struct Flow {
    pub(crate) wire: Wire,
    pub(crate) client: SocketAddr,
    pub(crate) server: SocketAddr,
    pub(crate) client_seq: u32,
    pub(crate) server_seq: u32,
    pub(crate) time_us: i64,
}

impl Flow {
    pub(crate) fn new(wire: Wire, client: &str, server: &str) -> Flow {
        Flow {
            wire,
            client: client.parse().unwrap(),
            server: server.parse().unwrap(),
            client_seq: 1_000,
            server_seq: 5_000_000,
            time_us: 1_700_000_000_000_000,
        }
    }

    /// Sequence numbers start here instead (e.g. just below the wrap).
    pub(crate) fn isn(mut self, client: u32, server: u32) -> Flow {
        self.client_seq = client;
        self.server_seq = server;
        self
    }

    fn tick(&mut self) -> i64 {
        self.time_us += 1_000;
        self.time_us
    }

    fn pkt(&mut self, from_client: bool, seq: u32, flags: Flags, payload: &[u8]) -> Pkt {
        let (src, dst) = if from_client {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        Pkt {
            time_us: self.tick(),
            data: frame(self.wire, src, dst, seq, flags, payload),
        }
    }

    /// SYN, SYN-ACK, ACK.
    pub(crate) fn handshake(&mut self) -> Vec<Pkt> {
        let (c, s) = (self.client_seq, self.server_seq);
        let syn = Flags {
            syn: true,
            ..Flags::default()
        };
        let out = vec![
            self.pkt(true, c, syn, b""),
            self.pkt(
                false,
                s,
                Flags {
                    ack: Some(c.wrapping_add(1)),
                    ..syn
                },
                b"",
            ),
            self.pkt(
                true,
                c.wrapping_add(1),
                Flags {
                    ack: Some(s.wrapping_add(1)),
                    ..Flags::default()
                },
                b"",
            ),
        ];
        self.client_seq = c.wrapping_add(1);
        self.server_seq = s.wrapping_add(1);
        out
    }

    /// The client's next segment.
    pub(crate) fn client(&mut self, payload: &[u8]) -> Pkt {
        let seq = self.client_seq;
        self.client_seq = seq.wrapping_add(payload.len() as u32);
        let ack = Flags {
            ack: Some(self.server_seq),
            ..Flags::default()
        };
        self.pkt(true, seq, ack, payload)
    }

    /// The server's next segment.
    pub(crate) fn server(&mut self, payload: &[u8]) -> Pkt {
        let seq = self.server_seq;
        self.server_seq = seq.wrapping_add(payload.len() as u32);
        let ack = Flags {
            ack: Some(self.client_seq),
            ..Flags::default()
        };
        self.pkt(false, seq, ack, payload)
    }

    /// The client's next bytes cut into segments of at most `size`.
    pub(crate) fn client_split(&mut self, payload: &[u8], size: usize) -> Vec<Pkt> {
        payload.chunks(size).map(|c| self.client(c)).collect()
    }

    /// The server's next bytes cut into segments of at most `size`.
    pub(crate) fn server_split(&mut self, payload: &[u8], size: usize) -> Vec<Pkt> {
        payload.chunks(size).map(|c| self.server(c)).collect()
    }

    /// FIN from both sides, then the last ACK.
    pub(crate) fn close(&mut self) -> Vec<Pkt> {
        let (c, s) = (self.client_seq, self.server_seq);
        let out = vec![
            self.pkt(
                true,
                c,
                Flags {
                    fin: true,
                    ack: Some(s),
                    ..Flags::default()
                },
                b"",
            ),
            self.pkt(
                false,
                s,
                Flags {
                    fin: true,
                    ack: Some(c.wrapping_add(1)),
                    ..Flags::default()
                },
                b"",
            ),
            self.pkt(
                true,
                c.wrapping_add(1),
                Flags {
                    ack: Some(s.wrapping_add(1)),
                    ..Flags::default()
                },
                b"",
            ),
        ];
        self.client_seq = c.wrapping_add(1);
        self.server_seq = s.wrapping_add(1);
        out
    }
}

/// Everything `packets` make a fresh reassembler report.
pub(crate) fn feed(link: LinkType, packets: &[Pkt]) -> (Vec<Seen>, Counters) {
    feed_with(Limits::default(), link, packets)
}

pub(crate) fn feed_with(limits: Limits, link: LinkType, packets: &[Pkt]) -> (Vec<Seen>, Counters) {
    let mut r = Reassembler::new(limits);
    let mut out = Vec::new();
    for p in packets {
        r.packet(p.time_us, link, &p.data, &mut out);
    }
    (out, *r.counters())
}

/// Requests as `METHOD target`, responses as `status bytes`.
pub(crate) fn short(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| match s {
            Seen::Request(r) => format!("{} {}", r.method, r.target),
            Seen::Response(r) => match r.bytes {
                Some(n) => format!("{} {n}", r.status),
                None => format!("{} -", r.status),
            },
        })
        .collect()
}

/// A GET with a Host header.
pub(crate) fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test\r\n\r\n").into_bytes()
}

/// A 200 with a body.
pub(crate) fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(feature = "live")]
pub(crate) mod files {
    //! pcap and pcapng files of test packets.

    use std::borrow::Cow;
    use std::fs::File;
    use std::path::Path;
    use std::time::Duration;

    use banhammer_capture::LinkType;
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::{
        InterfaceDescriptionBlock, InterfaceDescriptionOption,
    };
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::DataLink;

    use super::Pkt;

    fn timestamp(time_us: i64) -> Duration {
        Duration::from_micros(u64::try_from(time_us).unwrap())
    }

    pub(crate) fn write_pcap(path: &Path, link: LinkType, packets: &[Pkt]) {
        let header = PcapHeader {
            datalink: DataLink::from(u32::from(link.linktype())),
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(File::create(path).unwrap(), header).unwrap();
        for p in packets {
            let len = u32::try_from(p.data.len()).unwrap();
            w.write_packet(&PcapPacket::new(timestamp(p.time_us), len, &p.data))
                .unwrap();
        }
    }

    /// A pcapng file with nanosecond timestamps (libpcap scales them to microseconds).
    pub(crate) fn write_pcapng(path: &Path, link: LinkType, packets: &[Pkt]) {
        let mut w = PcapNgWriter::new(File::create(path).unwrap()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::from(u32::from(link.linktype())),
            snaplen: 0,
            options: vec![InterfaceDescriptionOption::IfTsResol(9)],
        })
        .unwrap();
        for p in packets {
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: timestamp(p.time_us),
                original_len: u32::try_from(p.data.len()).unwrap(),
                data: Cow::Borrowed(&p.data),
                options: vec![],
            })
            .unwrap();
        }
    }
}
