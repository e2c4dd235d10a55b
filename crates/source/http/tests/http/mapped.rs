//! IPv4-mapped clients ("Real logs and captures" issue, item 1): `::ffff:192.0.2.10` is
//! `192.0.2.10` wherever the service reads a client address — `/detect`'s `ip`, the socket
//! peer of a dual-stack listener, `X-Forwarded-For`, and the trusted-proxy match — so that
//! it is one token with the plain form, not an IPv6 address grouped with every other IPv4
//! client.

use std::time::Duration;

use banhammer_config::TokenFrom;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::connections::connect_from;
use super::{seed_example, start, start_on, Server, StatusCode};

#[tokio::test]
async fn a_mapped_detect_ip_counts_with_the_plain_one() {
    let s = start("", |_| {}).await;
    for i in 0..10 {
        let ip = if i % 2 == 0 {
            "::ffff:192.0.2.10"
        } else {
            "192.0.2.10"
        };
        assert!(!s.attack(ip, "one@example.com").await, "request {i} passes");
    }
    assert!(
        s.attack("::ffff:192.0.2.10", "one@example.com").await,
        "the 11th in 5 s, in either form, is the attack"
    );
    assert!(s.attack("192.0.2.10", "one@example.com").await);
    assert!(
        !s.attack("::ffff:192.0.2.11", "one@example.com").await,
        "another mapped IPv4 is another IP, not the same IPv6 /64"
    );
}

impl Server {
    /// One `login_failed` incr, with `X-Forwarded-For: xff` if given.
    async fn incr_forwarded(&self, xff: Option<&str>) {
        let mut req = self
            .http
            .post(format!("{}/v1/incr", self.base))
            .json(&json!({"metric": "login_failed"}));
        if let Some(xff) = xff {
            req = req.header("x-forwarded-for", xff);
        }
        assert_eq!(req.send().await.unwrap().status(), StatusCode::OK);
    }

    /// The count of `login_failed` for `token` in its first tier.
    async fn failures(&self, token: &str) -> Value {
        let (_, st) = self.get(&format!("/v1/status/{token}/login_failed")).await;
        st["tiers"][0]["value"].clone()
    }
}

/// The seed example, its token the client address, behind the trusted proxy `net`.
async fn behind_proxy(net: &str) -> Server {
    start(&seed_example(), |c| {
        c.token_from = TokenFrom::Peer;
        c.trusted_proxies = vec![net.parse().unwrap()];
    })
    .await
}

#[tokio::test]
async fn a_mapped_forwarded_client_is_the_ipv4_client() {
    let s = behind_proxy("127.0.0.1/32").await;
    s.incr_forwarded(Some("::ffff:198.51.100.4")).await;
    s.incr_forwarded(Some("198.51.100.4")).await;
    assert_eq!(
        s.failures("198.51.100.4").await,
        2,
        "one token in both forms"
    );
}

#[tokio::test]
async fn a_trusted_proxy_written_mapped_is_the_ipv4_proxy() {
    // The proxy connects over IPv4 (127.0.0.1); the setting names it in its mapped form.
    let s = behind_proxy("::ffff:127.0.0.1/128").await;
    s.incr_forwarded(Some("198.51.100.4")).await;
    assert_eq!(
        s.failures("198.51.100.4").await,
        1,
        "the proxy is trusted: counted for the forwarded client"
    );
    assert_eq!(s.failures("127.0.0.1").await, 0);
}

/// Whether a `GET /healthz` on `stream` is answered 200 (false if the server closes it).
async fn healthz_on(stream: &mut tokio::net::TcpStream) -> bool {
    let asked = stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
        .await;
    let mut answer = [0u8; 12];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut answer)).await;
    asked.is_ok() && matches!(read, Ok(Ok(_))) && answer.starts_with(b"HTTP/1.1 200")
}

#[tokio::test]
async fn a_dual_stack_listener_sees_ipv4_clients_as_ipv4() {
    // An IPv6 socket that IPv4 clients reach sees them as `::ffff:a.b.c.d` peers, as one on
    // [::] does; bound to the mapped loopback, only this host reaches it (admin routes stay
    // closed to the network). It needs IPv6 sockets; the forwarded tests above cover the
    // mapped form without them.
    let s = start_on("[::ffff:127.0.0.1]:0", &seed_example(), |c| {
        c.token_from = TokenFrom::Peer;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.max_connections_per_peer = 1;
    })
    .await;
    s.incr_forwarded(None).await;
    assert_eq!(s.failures("127.0.0.1").await, 1, "the peer's token is IPv4");
    // The trusted proxy is exempt from the per-peer limit, though its socket says ::ffff:.
    let mut first = connect_from(1, s.addr).await;
    let mut second = connect_from(1, s.addr).await;
    assert!(healthz_on(&mut first).await, "the proxy's first connection");
    assert!(
        healthz_on(&mut second).await,
        "the proxy's second connection"
    );
}
