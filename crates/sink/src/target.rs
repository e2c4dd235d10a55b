//! `Target`: a token read as an IP address or network prefix, the only kind of token that
//! reaches a firewall command or an nftables script.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The shortest IPv4 prefix a firewall is given: a token such as `0.0.0.0/0` would block every
/// IPv4 client, so prefixes shorter than this are not addresses here (a /16 is 65,536 hosts).
pub const MIN_IPV4_PREFIX: u8 = 16;
/// The shortest IPv6 prefix a firewall is given (a /32 is an ISP's allocation).
pub const MIN_IPV6_PREFIX: u8 = 32;

/// A token checked to be an address (`1.2.3.4`, `2001:db8::1`) or a prefix
/// (`2001:db8:1:2::/64`). What a firewall sees is written from the parsed value, never copied
/// from the token: only digits, hex letters, `.`, `:` and `/` can reach a command or a script.
///
/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) is the IPv4 client it maps; host bits below
/// the prefix are cleared (`10.0.0.5/24` is `10.0.0.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    addr: IpAddr,
    prefix: u8,
}

impl Target {
    /// `token` as an address or prefix, or `None` for anything else (a user id, a host name,
    /// a prefix shorter than [`MIN_IPV4_PREFIX`] / [`MIN_IPV6_PREFIX`]).
    pub fn parse(token: &str) -> Option<Target> {
        let (addr, prefix) = match token.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (token, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let full = full_length(addr);
        let prefix = match prefix {
            None => full,
            // Plain digits only: `+8`, ` 8` or `08` are not what an address list writes.
            Some(p) if (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => {
                if p.len() > 1 && p.starts_with('0') {
                    return None;
                }
                p.parse::<u8>().ok().filter(|n| *n <= full)?
            }
            Some(_) => return None,
        };
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let shortest = match addr {
            IpAddr::V4(_) => MIN_IPV4_PREFIX,
            IpAddr::V6(_) => MIN_IPV6_PREFIX,
        };
        (prefix >= shortest).then(|| Target {
            addr: masked(addr, prefix),
            prefix,
        })
    }

    /// The address, host bits cleared: `2001:db8:1:2::` for `2001:db8:1:2::/64`.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length: the token's `/N`, or the address's full length (32, 128).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether it is IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// nftables' name of the address family: `ip` or `ip6`.
    pub fn family(&self) -> &'static str {
        if self.is_ipv4() {
            "ip"
        } else {
            "ip6"
        }
    }
}

impl fmt::Display for Target {
    /// `1.2.3.4` for one address, `10.0.0.0/24` for a prefix: an nftables element.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == full_length(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

fn full_length(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `addr` with the bits past `prefix` cleared.
fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(token: &str) -> Option<(String, &'static str, u8)> {
        Target::parse(token).map(|t| (t.to_string(), t.family(), t.prefix()))
    }

    #[test]
    fn addresses_and_prefixes_are_read_with_their_family_and_length() {
        assert_eq!(shown("1.2.3.4"), Some(("1.2.3.4".into(), "ip", 32)));
        assert_eq!(shown("10.0.0.5/24"), Some(("10.0.0.0/24".into(), "ip", 24)));
        assert_eq!(
            shown("2001:db8:1:2::/64"),
            Some(("2001:db8:1:2::/64".into(), "ip6", 64))
        );
        assert_eq!(
            Target::parse("2001:db8:1:2::/64")
                .unwrap()
                .addr()
                .to_string(),
            "2001:db8:1:2::"
        );
        assert_eq!(
            shown("2001:db8::1"),
            Some(("2001:db8::1".into(), "ip6", 128))
        );
        // An IPv4-mapped client is the IPv4 client.
        assert_eq!(shown("::ffff:1.2.3.4"), Some(("1.2.3.4".into(), "ip", 32)));
        assert_eq!(
            shown("::ffff:10.1.0.0/112"),
            Some(("10.1.0.0/16".into(), "ip", 16))
        );
    }

    #[test]
    fn anything_else_is_no_target() {
        for token in [
            "alice",
            "host.example",
            "",
            "1.2.3.4 ",
            "1.2.3.4/",
            "1.2.3.4/33",
            "1.2.3.4/+8",
            "1.2.3.4/024",
            "1.2.3.4/24/1",
            "01.2.3.4",
            "fe80::1%eth0",
            "[::1]",
            "1.2.3.4; flush ruleset",
            "1.2.3.4 } ; flush ruleset ; add element inet t s { 5.6.7.8",
            "2001:db8::/129",
            // Too wide to be one client: a token must not block the whole internet.
            "0.0.0.0/0",
            "10.0.0.0/15",
            "::/0",
            "2001:db8::/31",
        ] {
            assert_eq!(Target::parse(token), None, "{token:?}");
        }
    }
}
