//! Connections (hardening issue, item 1): silent sockets past the cap, one peer's share, idle
//! and keep-alive timeouts, and a request in progress that is not idle. Client sockets bind
//! to several 127.0.0.x addresses so that one host looks like several peers. Every wait is on
//! a condition (a socket reads EOF, an answer arrives), bounded in time; loops are bounded in
//! count.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::{seed_example, start, Server, StatusCode};

/// A connection to `to` from `127.0.0.{host}`.
pub(super) async fn connect_from(host: u8, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from(([127, 0, 0, host], 0)))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), socket.connect(to))
        .await
        .expect("the kernel completes the handshake")
        .unwrap()
}

/// Whether the server closes `stream` within `limit` (reads EOF or a reset; whatever the
/// server sent before is skipped).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Whether `stream` is still open: nothing to read and no EOF.
fn still_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Asserts that the server closes each of `socks` within `limit`; `what` names them.
async fn assert_closed(socks: &mut [TcpStream], limit: Duration, what: &str) {
    for (i, sock) in socks.iter_mut().enumerate() {
        assert!(closed_within(sock, limit).await, "{what}: #{i} is closed");
    }
}

/// Asserts that each of `socks` is still open; `what` names them.
fn assert_open(socks: &[TcpStream], what: &str) {
    for (i, sock) in socks.iter().enumerate() {
        assert!(still_open(sock), "{what}: #{i} is open");
    }
}

impl Server {
    /// `GET /healthz` on a new connection, with a deadline; the time it took.
    async fn healthz_within(&self, limit: Duration) -> Duration {
        let started = Instant::now();
        let r = reqwest::Client::new()
            .get(format!("{}/healthz", self.base))
            .timeout(limit)
            .send()
            .await
            .expect("/healthz is answered");
        assert_eq!(r.status(), StatusCode::OK);
        started.elapsed()
    }

    /// The `/metrics` text.
    async fn metrics(&self) -> String {
        let r = self.http.get(format!("{}/metrics", self.base)).send();
        r.await.unwrap().text().await.unwrap()
    }
}

#[tokio::test]
async fn silent_connections_past_the_cap_do_not_stop_the_service() {
    let s = start("", |c| {
        c.max_connections = 64;
        c.max_connections_per_peer = 32;
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    // 200 sockets that never send a byte, 25 from each of 8 peers (under the per-peer limit).
    let mut silent = Vec::new();
    for i in 0..200u8 {
        silent.push(connect_from(2 + i % 8, s.addr).await);
    }
    let took = s.healthz_within(Duration::from_secs(5)).await;
    assert!(
        took < Duration::from_secs(2),
        "answered promptly, took {took:?}"
    );
    // Room was made by closing the oldest idle connections: the first ones are closed, the
    // newest still open (60 s of idle time is far away).
    let five = Duration::from_secs(5);
    assert_closed(&mut silent[..100], five, "the 100 oldest silent sockets").await;
    assert_open(&silent[150..], "the 50 newest silent sockets");
    let text = s.metrics().await;
    let evicted: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"banhammer_http_connections_closed_total{reason="evicted"} "#)
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(evicted >= 200 - 64, "{text}");
}

#[tokio::test]
async fn idle_and_kept_alive_connections_close_after_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let s = start("", |c| c.idle_timeout = idle).await;
    let started = Instant::now();
    let mut silent = Vec::new();
    for i in 0..10u8 {
        silent.push(connect_from(2 + i % 2, s.addr).await);
    }
    // A keep-alive connection after one answered request.
    let mut kept = connect_from(4, s.addr).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains(r#"{"status":"ok"}"#) {
        let n = tokio::time::timeout(Duration::from_secs(5), kept.read(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        assert!(n > 0, "answered before the connection closed");
        answer.extend_from_slice(&buf[..n]);
    }
    let ten = Duration::from_secs(10);
    assert_closed(&mut silent, ten, "silent sockets after the idle timeout").await;
    assert!(
        closed_within(&mut kept, Duration::from_secs(10)).await,
        "the idle keep-alive connection closed"
    );
    assert!(started.elapsed() >= idle, "not before the idle timeout");
}

#[tokio::test]
async fn one_peer_holds_at_most_its_share_of_connections() {
    let s = start("", |c| {
        c.max_connections_per_peer = 8;
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut socks = Vec::new();
    for _ in 0..20 {
        socks.push(connect_from(2, s.addr).await);
    }
    let five = Duration::from_secs(5);
    assert_closed(
        &mut socks[8..],
        five,
        "connections past one peer's 8, at once",
    )
    .await;
    assert_open(&socks[..8], "one peer's first 8 connections");
    let took = s.healthz_within(Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(2), "another peer is served");
    let text = s.metrics().await;
    assert!(
        text.contains(r#"banhammer_http_connections_closed_total{reason="peer_limit"} 12"#),
        "{text}"
    );
    assert!(text.contains("banhammer_http_connections "), "{text}");
}

#[tokio::test]
async fn a_request_in_progress_is_not_idle() {
    let s = start(&seed_example(), |c| {
        c.max_connections = 8;
        c.idle_timeout = Duration::from_millis(300);
    })
    .await;
    // The head and half the body: the handler is reading the body, the request is under way.
    let body = br#"{"token": "192.0.2.1", "metric": "login_failed"}"#;
    let mut busy = connect_from(2, s.addr).await;
    let head = format!(
        "POST /v1/incr HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    busy.write_all(head.as_bytes()).await.unwrap();
    busy.write_all(&body[..10]).await.unwrap();
    // Silent sockets from other peers fill the cap several times over, and outlast the idle
    // timeout: the oldest idle ones are closed, never the busy one.
    let mut silent = Vec::new();
    for i in 0..30u8 {
        silent.push(connect_from(3 + i % 3, s.addr).await);
    }
    assert_closed(&mut silent, Duration::from_secs(10), "silent sockets").await;
    busy.write_all(&body[10..]).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains(r#"{"passed":true}"#) {
        let n = tokio::time::timeout(Duration::from_secs(5), busy.read(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        assert!(
            n > 0,
            "the request in progress was answered, not closed: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}
