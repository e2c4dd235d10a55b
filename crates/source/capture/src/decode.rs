//! Packet bytes to a TCP segment: the link layers libpcap hands us, then IP and TCP through
//! etherparse's lax slicer (a packet cut short by the snap length still yields what it holds).

use std::net::IpAddr;

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};

/// The link layer of captured packets: what the bytes of each packet start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II, with any 802.1Q / 802.1ad (`QinQ`) VLAN tags.
    Ethernet,
    /// Linux cooked capture v1 (`-i any` on older libpcap): a 16-byte header.
    LinuxSll,
    /// Linux cooked capture v2: a 20-byte header.
    LinuxSll2,
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    Null,
    /// OpenBSD loopback: a 4-byte address family in network byte order.
    Loop,
    /// Raw IPv4 or IPv6, told apart by the version field.
    RawIp,
    /// Raw IPv4 only.
    Ipv4,
    /// Raw IPv6 only.
    Ipv6,
}

impl LinkType {
    /// Every link type, for tests and fuzzing.
    pub const ALL: [LinkType; 8] = [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Null,
        LinkType::Loop,
        LinkType::RawIp,
        LinkType::Ipv4,
        LinkType::Ipv6,
    ];

    /// The link type for a libpcap `DLT_*` number (as `pcap_datalink` returns it), or for the
    /// `LINKTYPE_*` number stored in pcap files where the two differ (raw IP is `DLT_RAW` 12,
    /// or 14 on OpenBSD, and `LINKTYPE_RAW` 101). `None` for link types we do not decode.
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        Some(match dlt {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            12 | 14 | 101 => LinkType::RawIp,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            _ => return None,
        })
    }

    /// The `LINKTYPE_*` number that pcap and pcapng files store for this link type.
    pub fn linktype(self) -> u16 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Null => 0,
            LinkType::Loop => 108,
            LinkType::RawIp => 101,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
        }
    }
}

/// The TCP parts of one packet that reassembly needs.
// The bools are TCP's own flags.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment<'a> {
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    pub(crate) seq: u32,
    /// The acknowledgment number, when the ACK flag is set.
    pub(crate) ack: Option<u32>,
    pub(crate) syn: bool,
    pub(crate) fin: bool,
    pub(crate) rst: bool,
    pub(crate) payload: &'a [u8],
    /// The capture holds less than the IP header announced (snap length): the payload is a
    /// prefix, so a FIN on it cannot be placed.
    pub(crate) truncated: bool,
}

/// Why a packet yields no segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// Well formed, but not TCP over IP (ARP, UDP, ICMP, other link protocols).
    NotTcp,
    /// An IP fragment: not reassembled (HTTP clients and servers do not fragment TCP).
    Fragment,
    /// Too short or inconsistent to decode.
    Malformed,
}

/// Linux cooked v1 header length; the protocol is its last two bytes.
const SLL_LEN: usize = 16;
/// Linux cooked v2 header length; the protocol is its first two bytes.
const SLL2_LEN: usize = 20;
/// `ARPHRD_NETLINK`: cooked packets whose protocol field is a netlink family, not an `EtherType`.
const ARPHRD_NETLINK: u16 = 824;

/// Decodes one captured packet down to TCP.
pub(crate) fn decode(link: LinkType, data: &[u8]) -> Result<Segment<'_>, Skip> {
    let sliced = match link {
        LinkType::Ethernet => LaxSlicedPacket::from_ethernet(data).map_err(|_| Skip::Malformed)?,
        // The cooked headers are sliced here rather than by etherparse, whose v1 slicer refuses
        // hardware types it does not know, such as ARPHRD_LOOPBACK (`lo` seen through `any`)
        // and ARPHRD_NONE (tun devices); their protocol field is an EtherType all the same.
        LinkType::LinuxSll => {
            let header = data.get(..SLL_LEN).ok_or(Skip::Malformed)?;
            let hardware = u16::from_be_bytes([header[2], header[3]]);
            let protocol = u16::from_be_bytes([header[14], header[15]]);
            cooked(hardware, protocol, &data[SLL_LEN..])?
        }
        LinkType::LinuxSll2 => {
            let header = data.get(..SLL2_LEN).ok_or(Skip::Malformed)?;
            let protocol = u16::from_be_bytes([header[0], header[1]]);
            let hardware = u16::from_be_bytes([header[8], header[9]]);
            cooked(hardware, protocol, &data[SLL2_LEN..])?
        }
        // The family field is not checked: its values differ between systems (AF_INET6 is
        // 10, 24, 28 or 30) and the IP version field says the same thing.
        LinkType::Null | LinkType::Loop => {
            let ip = data.get(4..).ok_or(Skip::Malformed)?;
            LaxSlicedPacket::from_ip(ip).map_err(|_| Skip::Malformed)?
        }
        LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => {
            LaxSlicedPacket::from_ip(data).map_err(|_| Skip::Malformed)?
        }
    };
    let Some(net) = &sliced.net else {
        return Err(if sliced.stop_err.is_some() {
            Skip::Malformed
        } else {
            Skip::NotTcp
        });
    };
    let (src, dst, payload) = match net {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                v4.payload(),
            )
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                v6.payload(),
            )
        }
        LaxNetSlice::Arp(_) => return Err(Skip::NotTcp),
    };
    if link == LinkType::Ipv4 && !src.is_ipv4() || link == LinkType::Ipv6 && !src.is_ipv6() {
        return Err(Skip::Malformed);
    }
    if payload.fragmented {
        return Err(Skip::Fragment);
    }
    match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => Ok(Segment {
            src,
            dst,
            src_port: tcp.source_port(),
            dst_port: tcp.destination_port(),
            seq: tcp.sequence_number(),
            ack: tcp.ack().then(|| tcp.acknowledgment_number()),
            syn: tcp.syn(),
            fin: tcp.fin(),
            rst: tcp.rst(),
            payload: tcp.payload(),
            truncated: payload.incomplete,
        }),
        None if sliced.stop_err.is_some() => Err(Skip::Malformed),
        None if payload.ip_number == etherparse::ip_number::TCP => Err(Skip::Malformed),
        Some(_) | None => Err(Skip::NotTcp),
    }
}

/// The rest of a Linux cooked capture, from its protocol field down.
fn cooked(hardware: u16, protocol: u16, rest: &[u8]) -> Result<LaxSlicedPacket<'_>, Skip> {
    if hardware == ARPHRD_NETLINK {
        return Err(Skip::NotTcp);
    }
    Ok(LaxSlicedPacket::from_ether_type(EtherType(protocol), rest))
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;

    fn tcp_v4(payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .ack(7)
            .psh();
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn dlt_numbers_round_trip_through_the_file_numbers() {
        for link in LinkType::ALL {
            assert_eq!(LinkType::from_dlt(i32::from(link.linktype())), Some(link));
        }
        assert_eq!(LinkType::from_dlt(12), Some(LinkType::RawIp));
        assert_eq!(LinkType::from_dlt(14), Some(LinkType::RawIp));
        assert_eq!(LinkType::from_dlt(105), None);
    }

    #[test]
    fn raw_ipv4_tcp() {
        let packet = tcp_v4(b"GET / HTTP/1.1\r\n\r\n");
        let s = decode(LinkType::RawIp, &packet).unwrap();
        assert_eq!(s.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(
            (s.src_port, s.dst_port, s.seq, s.ack),
            (40000, 80, 1000, Some(7))
        );
        assert_eq!(s.payload, b"GET / HTTP/1.1\r\n\r\n");
        assert!(!s.truncated && !s.syn && !s.fin && !s.rst);
        assert_eq!(decode(LinkType::Ipv4, &packet).unwrap(), s);
        assert_eq!(decode(LinkType::Ipv6, &packet), Err(Skip::Malformed));
    }

    #[test]
    fn cut_short_by_the_snap_length_keeps_the_prefix() {
        let packet = tcp_v4(b"GET / HTTP/1.1\r\n\r\n");
        let s = decode(LinkType::RawIp, &packet[..packet.len() - 4]).unwrap();
        assert!(s.truncated);
        assert_eq!(s.payload, b"GET / HTTP/1.1");
    }

    #[test]
    fn cooked_loopback_is_decoded_although_etherparse_refuses_its_hardware_type() {
        let ip = tcp_v4(b"x");
        let mut sll = vec![0, 0, 0x03, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&ip);
        assert_eq!(decode(LinkType::LinuxSll, &sll).unwrap().payload, b"x");
        let mut netlink = sll.clone();
        netlink[2..4].copy_from_slice(&ARPHRD_NETLINK.to_be_bytes());
        assert_eq!(decode(LinkType::LinuxSll, &netlink), Err(Skip::NotTcp));
    }

    #[test]
    fn not_tcp_fragments_and_garbage() {
        let mut udp = Vec::new();
        PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9)
            .udp(1, 2)
            .write(&mut udp, b"hi")
            .unwrap();
        assert_eq!(decode(LinkType::RawIp, &udp), Err(Skip::NotTcp));

        let mut fragment = tcp_v4(b"abcdefgh");
        fragment[6] |= 0x20; // more fragments
        fragment[10] = 0;
        fragment[11] = 0;
        assert_eq!(decode(LinkType::RawIp, &fragment), Err(Skip::Fragment));

        for link in LinkType::ALL {
            assert!(decode(link, &[]).is_err());
            assert!(decode(link, &[0x45, 0, 0]).is_err());
        }
        let arp_ether = [0u8; 14];
        assert_eq!(decode(LinkType::Ethernet, &arp_ether), Err(Skip::NotTcp));
    }
}
