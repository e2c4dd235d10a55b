//! `GET /v1/check[/{metric}]`, the forward-auth check ("Bans that block" issue, part 3), spoken to as a
//! reverse proxy speaks to it: the test client on 127.0.0.1 is the trusted proxy and writes
//! `X-Forwarded-For`; a client bound to 127.0.0.2 is a stranger. The clock is the test's, so
//! `Retry-After` is exact. The real nginx and Caddy in front: `crates/cli/tests/proxies.rs`.

use reqwest::header::RETRY_AFTER;
use reqwest::Method;
use serde_json::Value;

use super::{start, Server, StatusCode};

/// The service with `check` in `[serve.check]` and `extra` in `[serve]`, which trusts
/// 127.0.0.1 as a proxy. `request`: the 3rd within 60 s bans for 60 s; `login`: the 2nd.
async fn checked(check: &str, extra: &str) -> Server {
    let config = format!(
        "[metrics.request]\n[[metrics.request.thresholds]]\nlimit = 3\nwindow = 60\n\
         actions = [\"block_local\"]\naction_duration = 60\n\n\
         [metrics.login]\n[[metrics.login.thresholds]]\nlimit = 2\nwindow = 60\n\
         actions = [\"block_local\"]\naction_duration = 60\n\n\
         [serve]\ntrusted_proxies = [\"127.0.0.1\"]\n{extra}\n\n[serve.check]\n{check}\n"
    );
    start(&config, |_| {}).await
}

impl Server {
    /// `method /v1/check{rest}` as the trusted proxy for `client`: the status and
    /// `Retry-After`.
    async fn check_as(
        &self,
        method: Method,
        rest: &str,
        client: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Option<String>) {
        let mut req = self
            .http
            .request(method, format!("{}/v1/check{rest}", self.base))
            .header("x-forwarded-for", client);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let retry = r
            .headers()
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        (r.status(), retry)
    }

    /// A plain `GET /v1/check` for `client`: its status.
    async fn check(&self, client: &str) -> StatusCode {
        self.check_as(Method::GET, "", client, &[]).await.0
    }

    /// The first tier's count of `metric` for `token`.
    async fn count(&self, token: &str, metric: &str) -> Value {
        let token = token.replace('/', "%2F");
        let (_, st) = self.get(&format!("/v1/status/{token}/{metric}")).await;
        st["tiers"][0]["value"].clone()
    }
}

#[tokio::test]
async fn without_the_section_the_check_is_a_json_404() {
    let s = start("", |_| {}).await;
    let (status, body) = s.get("/v1/check").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"].as_str().unwrap().contains("[serve.check]"),
        "{body}"
    );
}

#[tokio::test]
async fn the_forwarded_client_is_counted_and_refused_while_banned() {
    let s = checked("", "").await;
    assert_eq!(s.check("198.51.100.1").await, StatusCode::NO_CONTENT);
    assert_eq!(s.check("198.51.100.1").await, StatusCode::NO_CONTENT);
    assert_eq!(
        s.check_as(Method::GET, "", "198.51.100.1", &[]).await,
        (StatusCode::FORBIDDEN, Some("60".to_owned())),
        "the 3rd reaches the limit: 403 by default, Retry-After to the ban's end"
    );
    assert_eq!(
        s.check("198.51.100.2").await,
        StatusCode::NO_CONTENT,
        "another client is not affected"
    );
    s.advance(20);
    // A banned client's check still counts, in the background, and extends the ban to 60 s
    // after it (`after_trigger`): the ban ends in 40 s or, once counted, in 60.
    let (status, retry) = s.check_as(Method::HEAD, "", "198.51.100.1", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "HEAD is answered as GET");
    assert!(matches!(retry.as_deref(), Some("40" | "60")), "{retry:?}");
    s.advance(61);
    assert_eq!(
        s.check_as(Method::HEAD, "", "198.51.100.1", &[]).await,
        (StatusCode::NO_CONTENT, None),
        "the ban ended and the window moved on"
    );
}

#[tokio::test]
async fn banned_status_429_says_what_a_rate_limiter_says() {
    let s = checked("banned_status = 429", "").await;
    for _ in 0..2 {
        assert_eq!(s.check("203.0.113.9").await, StatusCode::NO_CONTENT);
    }
    assert_eq!(
        s.check_as(Method::GET, "", "203.0.113.9", &[]).await,
        (StatusCode::TOO_MANY_REQUESTS, Some("60".to_owned()))
    );
}

#[tokio::test]
async fn a_stranger_cannot_choose_the_address_or_the_metric() {
    let s = checked("metrics = [\"login\"]\nmetric_header = true", "").await;
    let stranger = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().ok())
        .build()
        .unwrap();
    for _ in 0..2 {
        let r = stranger
            .get(format!("{}/v1/check/login", s.base))
            .header("x-forwarded-for", "198.51.100.50")
            .header("x-banhammer-metric", "login")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(
        s.count("198.51.100.50", "request").await,
        0,
        "not the header's"
    );
    assert_eq!(
        s.count("127.0.0.2", "login").await,
        0,
        "not the named metric"
    );
    assert_eq!(
        s.count("127.0.0.2", "request").await,
        2,
        "the peer, as the configured metric"
    );
}

#[tokio::test]
async fn a_trusted_proxy_names_an_allowed_metric_only() {
    let s = checked("metrics = [\"login\"]", "").await;
    let c = "192.0.2.20";
    assert_eq!(
        s.check_as(Method::GET, "/login", c, &[]).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.check_as(Method::HEAD, "/login", c, &[]).await.0,
        StatusCode::FORBIDDEN,
        "login's 2nd reaches its limit"
    );
    assert_eq!(s.count(c, "login").await, 2);
    assert_eq!(s.count(c, "request").await, 0);
    let (status, _) = s.check_as(Method::GET, "/other", c, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not in metrics");
    // The query is never read (Caddy passes the client's own on): this counts as `request`.
    s.check_as(Method::GET, "?metric=login", "192.0.2.22", &[])
        .await;
    s.check_as(Method::GET, "?metric=a&metric=b", "192.0.2.22", &[])
        .await;
    assert_eq!(s.count("192.0.2.22", "request").await, 2);
    assert_eq!(s.count("192.0.2.22", "login").await, 0);
    // Nor is the header, unless metric_header.
    let h = [("x-banhammer-metric", "login")];
    s.check_as(Method::GET, "", "192.0.2.21", &h).await;
    assert_eq!(s.count("192.0.2.21", "request").await, 1);
    assert_eq!(s.count("192.0.2.21", "login").await, 0);

    let s = checked("metrics = [\"login\"]\nmetric_header = true", "").await;
    s.check_as(Method::GET, "", "192.0.2.21", &h).await;
    s.check_as(Method::GET, "/request", "192.0.2.21", &h).await;
    assert_eq!(s.count("192.0.2.21", "login").await, 1, "the header");
    assert_eq!(s.count("192.0.2.21", "request").await, 1, "the path wins");
}

#[tokio::test]
async fn an_allowed_client_is_never_counted_and_always_passes() {
    let s = checked("", "allow = [\"10.0.0.0/8\", \"2001:db8:aa::/48\"]").await;
    for client in ["10.1.2.3", "::ffff:10.9.9.9", "2001:db8:aa:1::5"] {
        for _ in 0..5 {
            assert_eq!(s.check(client).await, StatusCode::NO_CONTENT, "{client}");
        }
    }
    assert_eq!(s.count("10.1.2.3", "request").await, 0);
    assert_eq!(s.count("2001:db8:aa:1::/64", "request").await, 0);
    assert_eq!(s.check("11.1.2.3").await, StatusCode::NO_CONTENT);
    assert_eq!(s.count("11.1.2.3", "request").await, 1, "others count");
}

#[tokio::test]
async fn an_ipv6_client_counts_by_its_64_and_a_mapped_one_as_ipv4() {
    let s = checked("", "").await;
    assert_eq!(s.check("2001:db8:1:2::1").await, StatusCode::NO_CONTENT);
    assert_eq!(
        s.check("2001:db8:1:2:ffff::2").await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.check("2001:db8:1:2:abcd::3").await,
        StatusCode::FORBIDDEN,
        "a third address of the same /64 is the same client"
    );
    assert_eq!(s.check("2001:db8:1:3::1").await, StatusCode::NO_CONTENT);
    assert_eq!(s.count("2001:db8:1:2::/64", "request").await, 3);
    s.check("::ffff:192.0.2.44").await;
    s.check("192.0.2.44").await;
    assert_eq!(s.count("192.0.2.44", "request").await, 2);
}
