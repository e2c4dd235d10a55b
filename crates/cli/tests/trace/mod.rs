//! pcap files of TCP connections in Ethernet frames, written byte by byte as libpcap writes
//! them (the binary's tests have no packet-building crate), for the tests that run
//! `banhammer monitor --pcap`.
// Each test binary uses its part of it.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const PSH_ACK: u8 = 0x18;
const ACK: u8 = 0x10;

/// A capture being written: packets in time order, each 100 µs after the previous one
/// unless [`Trace::at`] moves the clock.
pub(crate) struct Trace {
    bytes: Vec<u8>,
    time_us: i64,
}

impl Trace {
    /// An Ethernet capture whose first packet is at `unix` seconds.
    pub(crate) fn new(unix: i64) -> Trace {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xa1b2_c3d4_u32.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&[0; 8]); // time zone, accuracy
        bytes.extend_from_slice(&262_144u32.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        Trace {
            bytes,
            time_us: unix * 1_000_000,
        }
    }

    /// Packets from now on are at `unix` seconds (and 100 µs apart).
    pub(crate) fn at(&mut self, unix: i64) -> &mut Trace {
        self.time_us = self.time_us.max(unix * 1_000_000);
        self
    }

    /// The file's size so far.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Writes the file, or its first `cut` bytes.
    pub(crate) fn write(&self, path: &Path, cut: Option<usize>) {
        let end = cut.unwrap_or(self.bytes.len()).min(self.bytes.len());
        std::fs::write(path, &self.bytes[..end]).unwrap();
    }

    fn packet(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) {
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&src.port().to_be_bytes());
        tcp.extend_from_slice(&dst.port().to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(payload);
        let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                frame.extend_from_slice(&0x0800u16.to_be_bytes());
                let total = u16::try_from(20 + tcp.len()).unwrap();
                let mut ip = vec![0x45, 0];
                ip.extend_from_slice(&total.to_be_bytes());
                ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
                ip.extend_from_slice(&s.octets());
                ip.extend_from_slice(&d.octets());
                let sum = ip
                    .chunks(2)
                    .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                    .sum::<u32>();
                let sum = (sum & 0xffff) + (sum >> 16);
                let sum = !u16::try_from((sum & 0xffff) + (sum >> 16)).unwrap();
                ip[10..12].copy_from_slice(&sum.to_be_bytes());
                frame.extend_from_slice(&ip);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                frame.extend_from_slice(&0x86ddu16.to_be_bytes());
                frame.extend_from_slice(&[0x60, 0, 0, 0]);
                frame.extend_from_slice(&u16::try_from(tcp.len()).unwrap().to_be_bytes());
                frame.extend_from_slice(&[6, 64]);
                frame.extend_from_slice(&s.octets());
                frame.extend_from_slice(&d.octets());
            }
            _ => panic!("mixed address families"),
        }
        frame.extend_from_slice(&tcp);
        self.time_us += 100;
        let len = u32::try_from(frame.len()).unwrap();
        let secs = u32::try_from(self.time_us / 1_000_000).unwrap();
        let micros = u32::try_from(self.time_us % 1_000_000).unwrap();
        for field in [secs, micros, len, len] {
            self.bytes.extend_from_slice(&field.to_le_bytes());
        }
        self.bytes.extend_from_slice(&frame);
    }
}

/// One TCP connection: its ends and next sequence numbers.
pub(crate) struct Conn {
    client: SocketAddr,
    server: SocketAddr,
    client_seq: u32,
    server_seq: u32,
}

impl Conn {
    /// A connection from `client` to `server` (`"10.0.0.1:40000"`) already open when the
    /// capture started: no packet until the first `send`.
    pub(crate) fn already_open(client: &str, server: &str) -> Conn {
        Conn {
            client: client.parse().unwrap(),
            server: server.parse().unwrap(),
            client_seq: 1_000,
            server_seq: 9_000,
        }
    }

    /// Opens a connection from `client` to `server` (`"10.0.0.1:40000"`) with a handshake.
    pub(crate) fn open(trace: &mut Trace, client: &str, server: &str) -> Conn {
        let mut c = Conn::already_open(client, server);
        trace.packet(c.client, c.server, c.client_seq, 0, SYN, b"");
        trace.packet(
            c.server,
            c.client,
            c.server_seq,
            c.client_seq + 1,
            SYN | ACK,
            b"",
        );
        c.client_seq += 1;
        c.server_seq += 1;
        trace.packet(c.client, c.server, c.client_seq, c.server_seq, ACK, b"");
        c
    }

    /// The client sends `bytes` in one segment.
    pub(crate) fn send(&mut self, trace: &mut Trace, bytes: &[u8]) -> &mut Conn {
        trace.packet(
            self.client,
            self.server,
            self.client_seq,
            self.server_seq,
            PSH_ACK,
            bytes,
        );
        self.client_seq += u32::try_from(bytes.len()).unwrap();
        self
    }

    /// The server answers `bytes` in one segment.
    pub(crate) fn answer(&mut self, trace: &mut Trace, bytes: &[u8]) -> &mut Conn {
        trace.packet(
            self.server,
            self.client,
            self.server_seq,
            self.client_seq,
            PSH_ACK,
            bytes,
        );
        self.server_seq += u32::try_from(bytes.len()).unwrap();
        self
    }

    /// The server closes, then the client.
    pub(crate) fn close(&mut self, trace: &mut Trace) {
        let fin = FIN | ACK;
        trace.packet(
            self.server,
            self.client,
            self.server_seq,
            self.client_seq,
            fin,
            b"",
        );
        self.server_seq += 1;
        trace.packet(
            self.client,
            self.server,
            self.client_seq,
            self.server_seq,
            fin,
            b"",
        );
        self.client_seq += 1;
        trace.packet(
            self.server,
            self.client,
            self.server_seq,
            self.client_seq,
            ACK,
            b"",
        );
    }
}
