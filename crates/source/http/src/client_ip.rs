//! The client address: the socket peer, or `X-Forwarded-For` when the peer is a trusted proxy.
//! An IPv4-mapped address (`::ffff:a.b.c.d`, how a dual-stack socket shows an IPv4 client) is
//! the IPv4 address everywhere here.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client of a request from `peer` with `headers`: walking `X-Forwarded-For` from the
/// right, past every trusted proxy, to the first address that is not one. Headers from an
/// untrusted peer are ignored (anyone can write them).
pub(crate) fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| is_trusted(trusted, *ip);
    let peer_ip = peer.ip().to_canonical();
    if !is_trusted(&peer_ip) {
        return peer_ip;
    }
    let mut client = peer_ip;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for hop in text.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip.to_canonical();
                    if !is_trusted(&client) {
                        return client;
                    }
                }
                Err(_) => return client,
            }
        }
    }
    client
}

/// Whether `ip` is in one of the `trusted` networks, an address and its IPv4-mapped form
/// being one address: `127.0.0.1/32` trusts `::ffff:127.0.0.1`, and `::ffff:127.0.0.1/128`
/// trusts `127.0.0.1`.
pub(crate) fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    banhammer_config::nets_contain(trusted, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: SocketAddr = "10.1.1.1:5000".parse().unwrap();
        let stranger: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let h = headers(&["198.51.100.7, 10.2.2.2"]);
        assert_eq!(client_ip(proxy, &h, &trusted).to_string(), "198.51.100.7");
        assert_eq!(client_ip(stranger, &h, &trusted).to_string(), "203.0.113.9");
        // A spoofed leftmost entry does not win over the first untrusted hop from the right.
        let h = headers(&["1.1.1.1", "198.51.100.7"]);
        assert_eq!(client_ip(proxy, &h, &trusted).to_string(), "198.51.100.7");
        assert_eq!(
            client_ip(proxy, &headers(&["garbage"]), &trusted).to_string(),
            "10.1.1.1"
        );
        assert_eq!(
            client_ip(proxy, &HeaderMap::new(), &trusted).to_string(),
            "10.1.1.1"
        );
    }

    #[test]
    fn a_mapped_address_is_its_ipv4_address() {
        let v4: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let mapped: Vec<IpNet> = vec!["::ffff:127.0.0.1/128".parse().unwrap()];
        for ip in ["127.0.0.1", "::ffff:127.0.0.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_trusted(&v4, ip) && is_trusted(&mapped, ip), "{ip}");
        }
        assert!(!is_trusted(&v4, "::1".parse().unwrap()));
        let peer: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let h = headers(&["::ffff:198.51.100.7"]);
        assert_eq!(client_ip(peer, &h, &v4).to_string(), "198.51.100.7");
    }
}
