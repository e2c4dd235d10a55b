//! Who a line is from: an IP address (an IPv4-mapped IPv6 address read as the IPv4 address),
//! or a host name where the server looked names up (Apache's `HostnameLookups`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// The longest host name accepted, in bytes (DNS's 253, without a trailing dot).
pub const MAX_HOST_NAME: usize = 253;

/// A line's client, as its log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client<'a> {
    /// An address. An IPv4-mapped IPv6 address (`::ffff:203.0.113.9`, as Node and dual-stack
    /// sockets log IPv4 clients) is the IPv4 address: it is the same client.
    Ip(IpAddr),
    /// A host name of RFC 1123 shape, as written (its case kept; tokens lower-case it).
    Host(&'a str),
}

impl<'a> Client<'a> {
    /// Reads a client field: an address (IPv6 also in brackets), else a host name; `None` for
    /// anything else.
    pub fn parse(text: &'a str) -> Option<Self> {
        match ip(text) {
            Some(ip) => Some(Client::Ip(ip)),
            None => is_host_name(text).then_some(Client::Host(text)),
        }
    }

    /// The address, if the client is one.
    pub fn ip(self) -> Option<IpAddr> {
        match self {
            Client::Ip(ip) => Some(ip),
            Client::Host(_) => None,
        }
    }
}

impl From<IpAddr> for Client<'_> {
    fn from(ip: IpAddr) -> Self {
        Client::Ip(ip.to_canonical())
    }
}

/// The address, or the host name as written.
impl fmt::Display for Client<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::Ip(ip) => ip.fmt(f),
            Client::Host(name) => f.write_str(name),
        }
    }
}

/// Whether `name` has the shape of a host name (RFC 1123 §2.1): labels of 1 to 63 ASCII
/// letters, digits and hyphens, not starting or ending with a hyphen, joined by dots, at most
/// [`MAX_HOST_NAME`] bytes. The last label is not all digits (RFC 3696 §2), so a bad address
/// such as `999.1.1.1` or `1.2.3` is not taken for a name.
pub fn is_host_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_HOST_NAME {
        return false;
    }
    let mut last_all_digits = false;
    for label in name.split('.') {
        let b = label.as_bytes();
        let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
            return false;
        };
        if b.len() > 63
            || first == b'-'
            || last == b'-'
            || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        {
            return false;
        }
        last_all_digits = b.iter().all(u8::is_ascii_digit);
    }
    !last_all_digits
}

/// An IPv4 or IPv6 address, also in brackets (`[::1]`); IPv4 without leading zeros. An
/// IPv4-mapped IPv6 address is returned as the IPv4 address.
pub(crate) fn ip(v: &str) -> Option<IpAddr> {
    if let Some(v4) = ipv4(v.as_bytes()) {
        return Some(IpAddr::V4(v4));
    }
    let v = v
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(v);
    v.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// Dotted-quad IPv4, the common case, without the standard library's general parser.
/// Accepts exactly what `Ipv4Addr::from_str` accepts (no leading zeros, no signs).
pub(crate) fn ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut n = 0;
    let mut value: u16 = 0;
    let mut len = 0;
    for &c in b {
        match c {
            b'0'..=b'9' => {
                if len == 3 || (len == 1 && value == 0) {
                    return None;
                }
                value = value * 10 + u16::from(c - b'0');
                len += 1;
            }
            b'.' if n < 3 && len > 0 => {
                octets[n] = u8::try_from(value).ok()?;
                n += 1;
                value = 0;
                len = 0;
            }
            _ => return None,
        }
    }
    if n != 3 || len == 0 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn fast_ipv4_agrees_with_the_standard_library_on_edge_cases() {
        for s in [
            "0.0.0.0",
            "255.255.255.255",
            "256.0.0.0",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "00.1.1.1",
            "0.01.1.1",
            "1.2.3.4 ",
            "+1.2.3.4",
            "1.2.3.0400",
            "",
        ] {
            assert_eq!(ipv4(s.as_bytes()), s.parse().ok(), "{s}");
        }
    }

    proptest! {
        #[test]
        fn fast_ipv4_agrees_with_the_standard_library(s in "[0-9.]{0,17}") {
            prop_assert_eq!(ipv4(s.as_bytes()), s.parse().ok());
        }
    }

    fn client(s: &str) -> Option<String> {
        Client::parse(s).map(|c| match c {
            Client::Ip(ip) => format!("ip {ip}"),
            Client::Host(h) => format!("host {h}"),
        })
    }

    #[test]
    fn ipv4_mapped_addresses_are_the_ipv4_address() {
        assert_eq!(
            client("::ffff:203.0.113.9").as_deref(),
            Some("ip 203.0.113.9")
        );
        assert_eq!(
            client("[::ffff:127.0.0.1]").as_deref(),
            Some("ip 127.0.0.1")
        );
        assert_eq!(
            client("::FFFF:cb00:7109").as_deref(),
            Some("ip 203.0.113.9")
        );
        // Other IPv6 addresses stay IPv6, also the deprecated IPv4-compatible form.
        assert_eq!(client("::203.0.113.9").as_deref(), Some("ip ::cb00:7109"));
        assert_eq!(client("2001:db8::1").as_deref(), Some("ip 2001:db8::1"));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(Client::from(mapped).to_string(), "10.1.2.3");
    }

    #[test]
    fn host_names_of_rfc_1123_shape_are_clients() {
        for name in [
            "in24.inetnebr.com",
            "PIWEBA3Y.prodigy.com",
            "localhost",
            "3com.com",
            "a-b.c0",
            "xn--bcher-kva.example",
        ] {
            assert_eq!(client(name), Some(format!("host {name}")), "{name}");
        }
        let longest = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(longest.len(), MAX_HOST_NAME);
        assert!(is_host_name(&longest));
        for junk in [
            "",
            "-",
            "999.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "-a.com",
            "a-.com",
            "a..com",
            "a.com.",
            ".a.com",
            "a_b.com",
            "exa mple.com",
            "\u{16}\u{3}",
            "é.com",
            "1546271816,BAN,58.236.203.13",
        ] {
            assert_eq!(client(junk), None, "{junk:?}");
        }
        assert!(!is_host_name(&format!("{longest}a")));
        assert!(!is_host_name(&format!("{}.com", "a".repeat(64))));
    }
}
