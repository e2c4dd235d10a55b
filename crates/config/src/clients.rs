//! Clients as tokens, in one place for every front end: how an address becomes the token it
//! is counted as (`ipv4_prefix`, `ipv6_prefix` of `[accesslog]` and `[serve]`), how an
//! operator's address becomes the token to ban, and whether an address or a token is in a
//! list of networks (`[serve] allow`, `trusted_proxies`, `[accesslog] ignore`), an address
//! and its IPv4-mapped form being one.

use std::net::IpAddr;

use ipnet::IpNet;
use toml::Spanned;

use crate::context::Cx;

/// How client addresses are grouped into tokens: an IPv4 address by its network at
/// `ipv4_prefix` (32: itself), an IPv6 one at `ipv6_prefix` (64 by default: a subscriber's
/// allocation, so that rotating addresses within it counts as one client; 128: itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTokens {
    /// IPv4 grouping prefix length (0–32).
    pub ipv4_prefix: u8,
    /// IPv6 grouping prefix length (0–128).
    pub ipv6_prefix: u8,
}

impl Default for ClientTokens {
    fn default() -> Self {
        ClientTokens {
            ipv4_prefix: 32,
            ipv6_prefix: 64,
        }
    }
}

impl ClientTokens {
    /// The token `ip` counts as: the address, or its network at the configured prefix
    /// (`2001:db8:1:2::/64`). An IPv4-mapped address counts as its IPv4 address, not as the
    /// IPv6 network `::/64` that every such client would share.
    pub fn token_of(&self, ip: IpAddr) -> String {
        let ip = ip.to_canonical();
        let prefix = match ip {
            IpAddr::V4(_) => self.ipv4_prefix,
            IpAddr::V6(_) => self.ipv6_prefix,
        };
        match IpNet::new(ip, prefix) {
            Ok(net) if prefix < net.max_prefix_len() => net.trunc().to_string(),
            _ => ip.to_string(),
        }
    }

    /// The token an operator names with `text` (`banhammer ban`, the admin routes): an
    /// address is the token its client counts as (`2001:db8:1:2::7` is `2001:db8:1:2::/64`),
    /// a network is written as tokens are (`2001:db8:1:2:0::/64`, `10.0.0.1/32` is
    /// `10.0.0.1`), any other text is the token itself.
    pub fn token_named(&self, text: &str) -> String {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return self.token_of(ip);
        }
        match text.parse::<IpNet>() {
            Ok(net) => net_token(net),
            Err(_) => text.to_owned(),
        }
    }
}

/// A network as a token: truncated, an IPv4-mapped network as its IPv4 network, a single
/// address as the address.
fn net_token(net: IpNet) -> String {
    let net = canonical_net(net).trunc();
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// Whether `ip` is in one of `nets`, an address and its IPv4-mapped form being one address:
/// `127.0.0.1/32` holds `::ffff:127.0.0.1`, and `::ffff:127.0.0.1/128` holds `127.0.0.1`.
pub fn nets_contain(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    let mapped = match ip {
        IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
        IpAddr::V6(_) => None,
    };
    nets.iter()
        .any(|n| n.contains(&ip) || mapped.is_some_and(|m| n.contains(&m)))
}

/// Whether the token `text` names only clients within `nets`: an address in one of them, or
/// a network (a grouped IPv6 client, `2001:db8:1:2::/64`) wholly inside one. Any other token
/// (a user id, an API key) is in no list of networks.
pub fn nets_cover(nets: &[IpNet], text: &str) -> bool {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return nets_contain(nets, ip);
    }
    let Ok(net) = text.parse::<IpNet>() else {
        return false;
    };
    let net = canonical_net(net);
    nets.iter()
        .any(|n| canonical_net(*n).contains(&net.trunc()))
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network it maps.
pub(crate) fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

/// An address or CIDR range (`10.0.0.1`, `10.0.0.0/8`, `2001:db8::/32`).
pub(crate) fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

impl Cx<'_> {
    /// `ipv4_prefix` and `ipv6_prefix` of `section`, each checked at its place.
    pub(crate) fn client_tokens(
        &mut self,
        section: &str,
        ipv4: Option<Spanned<u8>>,
        ipv6: Option<Spanned<u8>>,
    ) -> ClientTokens {
        let mut c = ClientTokens::default();
        if let Some(p) = ipv4 {
            if *p.get_ref() > 32 {
                self.push(
                    Some(p.span()),
                    &format!("{section}.ipv4_prefix"),
                    "must be 0 to 32",
                );
            }
            c.ipv4_prefix = *p.get_ref();
        }
        if let Some(p) = ipv6 {
            if *p.get_ref() > 128 {
                self.push(
                    Some(p.span()),
                    &format!("{section}.ipv6_prefix"),
                    "must be 0 to 128",
                );
            }
            c.ipv6_prefix = *p.get_ref();
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| parse_net(n).unwrap()).collect()
    }

    #[test]
    fn addresses_group_by_their_prefix_and_128_keeps_each() {
        let c = ClientTokens::default();
        assert_eq!(
            c.token_of("2001:db8:1:2:aaaa::1".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(c.token_of("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
        let each = ClientTokens {
            ipv6_prefix: 128,
            ..c
        };
        assert_eq!(each.token_of("2001:db8::1".parse().unwrap()), "2001:db8::1");
    }

    #[test]
    fn an_operator_names_a_client_by_address_network_or_any_token() {
        let c = ClientTokens::default();
        assert_eq!(c.token_named("2001:db8:1:2::7"), "2001:db8:1:2::/64");
        assert_eq!(
            c.token_named("2001:db8:1:2:0:0:0:9/64"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(c.token_named("203.0.113.7"), "203.0.113.7");
        assert_eq!(c.token_named("203.0.113.7/32"), "203.0.113.7");
        assert_eq!(c.token_named("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(c.token_named("alice@example.com"), "alice@example.com");
    }

    #[test]
    fn a_list_covers_addresses_and_whole_networks_only() {
        let allow = nets(&["10.0.0.0/8", "2001:db8::/32", "::ffff:192.0.2.0/120"]);
        assert!(nets_contain(&allow, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(nets_contain(&allow, "192.0.2.9".parse().unwrap()));
        assert!(nets_cover(&allow, "10.1.2.3"));
        assert!(nets_cover(&allow, "2001:db8:1:2::/64"));
        assert!(nets_cover(&allow, "192.0.2.0/24"));
        assert!(!nets_cover(&allow, "2001:db9:1:2::/64"));
        assert!(!nets_cover(
            &nets(&["2001:db8:1:2::1"]),
            "2001:db8:1:2::/64"
        ));
        assert!(!nets_cover(&allow, "alice"));
    }
}
