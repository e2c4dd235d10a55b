//! Operator control (issue 14): bans by hand through `POST /v1/bans` with a duration and a
//! reason, listed with their origin and what is left, unbanned by address; `[serve] allow`
//! never counted nor banned on every route that takes a client address; IPv6 clients counted
//! by their /64 (`[serve] ipv6_prefix`, /128 possible), so that rotating addresses within
//! one /64 does not evade `/detect`.

use banhammer_config::TokenFrom;
use serde_json::{json, Value};

use super::{seed_example, start, Server, StatusCode, T0};

impl Server {
    /// `DELETE path`: status and body.
    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    /// One `login_failed` incr for `token`: whether it passed.
    async fn fail_login(&self, token: &str) -> bool {
        let (status, body) = self
            .post(
                "/v1/incr",
                json!({"token": token, "metric": "login_failed"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["passed"].as_bool().unwrap()
    }

    /// One `/detect` login with `ip` in the form: whether it is answered as an attack.
    async fn detect_ip(&self, ip: &str) -> bool {
        self.attack(ip, "one@example.com").await
    }

    /// One `login_failed` incr counted for the client `xff` behind the trusted proxy.
    async fn fail_login_from(&self, xff: &str) -> bool {
        let r = self
            .http
            .post(format!("{}/v1/incr", self.base))
            .header("x-forwarded-for", xff)
            .json(&json!({"metric": "login_failed"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        body["passed"].as_bool().unwrap()
    }
}

#[tokio::test]
async fn a_ban_by_hand_is_listed_with_its_origin_reason_and_time_left() {
    let s = start(&seed_example(), |_| {}).await;
    let (status, answer) = s
        .post(
            "/v1/bans",
            json!({"token": "203.0.113.7", "duration": "1h", "reason": "ticket #42"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "banned");
    assert_eq!(
        answer["ban"],
        json!({
            "token": "203.0.113.7", "origin": "manual", "rule": "manual", "tier": 0,
            "value": 0, "from": T0, "until": T0 + 3600, "remaining": 3600,
            "reason": "ticket #42",
        })
    );
    assert!(
        !s.fail_login("203.0.113.7").await,
        "banned, whatever its counts"
    );
    // A rule's ban beside it, for contrast.
    for _ in 0..10 {
        s.fail_login("198.51.100.23").await;
    }
    s.advance(600);
    let (_, list) = s.get("/v1/bans").await;
    let bans = list["bans"].as_array().unwrap();
    assert_eq!(bans.len(), 2, "{list}");
    // Oldest first, then by token.
    assert_eq!(bans[0]["token"], "198.51.100.23");
    assert_eq!(bans[0]["origin"], "rule");
    assert_eq!(bans[0]["rule"], "login_failed");
    assert_eq!(bans[0]["reason"], Value::Null);
    assert_eq!(bans[1]["origin"], "manual");
    assert_eq!(bans[1]["remaining"], 3000);
    // Unbanned by hand: it passes again, and the ban is gone from the list.
    let (status, u) = s.delete("/v1/bans/203.0.113.7").await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(u["unbanned_at"], T0 + 600);
    assert!(s.fail_login("203.0.113.7").await);
    assert_eq!(
        s.delete("/v1/bans/203.0.113.7").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_ban_by_hand_carries_a_ban_further_and_never_shortens_it() {
    let s = start(&seed_example(), |_| {}).await;
    for _ in 0..10 {
        s.fail_login("198.51.100.23").await;
    }
    let (_, a) = s
        .post(
            "/v1/bans",
            json!({"token": "198.51.100.23", "duration": 86_400, "reason": "persistent"}),
        )
        .await;
    assert_eq!(a["outcome"], "extended", "{a}");
    assert_eq!(a["ban"]["origin"], "rule", "the ban keeps its origin");
    assert_eq!(a["ban"]["until"], T0 + 86_400);
    assert_eq!(a["ban"]["reason"], "persistent");
    let (_, a) = s
        .post(
            "/v1/bans",
            json!({"token": "198.51.100.23", "duration": "10m"}),
        )
        .await;
    assert_eq!(a["outcome"], "unchanged", "{a}");
    assert_eq!(a["ban"]["until"], T0 + 86_400);
}

#[tokio::test]
async fn a_ban_by_hand_is_checked() {
    let s = start(&seed_example(), |_| {}).await;
    for (body, why) in [
        (json!({"token": "a", "duration": 0}), "1 second to 10 years"),
        (json!({"token": "a", "duration": "soon"}), "duration"),
        (
            json!({"token": "a", "duration": 60, "reason": "x".repeat(513)}),
            "512 bytes",
        ),
        (json!({"token": "", "duration": 60}), "token"),
    ] {
        let (status, answer) = s.post("/v1/bans", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(why),
            "{body}: {answer}"
        );
    }
    let (status, _) = s.post("/v1/bans", json!({"token": "a"})).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "no duration: not the route's body"
    );
    let (_, list) = s.get("/v1/bans").await;
    assert_eq!(list["bans"], json!([]));
}

#[tokio::test]
async fn an_address_names_the_token_its_client_counts_as() {
    let s = start(&seed_example(), |_| {}).await;
    let (_, a) = s
        .post(
            "/v1/bans",
            json!({"token": "2001:db8:1:2::7", "duration": 60}),
        )
        .await;
    assert_eq!(a["ban"]["token"], "2001:db8:1:2::/64", "{a}");
    let (status, one) = s.get("/v1/bans/2001:db8:1:2::99").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["token"], "2001:db8:1:2::/64");
    let (status, one) = s.get("/v1/bans/2001:db8:1:2::%2F64").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the network itself, its `/` escaped"
    );
    assert_eq!(one["token"], "2001:db8:1:2::/64");
    let (status, u) = s.delete("/v1/bans/2001:db8:1:2:ffff::1").await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(u["token"], "2001:db8:1:2::/64");
}

#[tokio::test]
async fn a_ban_by_hand_is_an_offence_for_escalating_tiers() {
    let config = "[metrics.login_failed]\n[[metrics.login_failed.thresholds]]\nlimit = 3\n\
                  window = 60\nactions = [\"block_local\"]\naction_duration = 100\n\
                  escalate = { factor = 2, max = \"1d\", memory = \"1d\" }\n";
    let s = start(config, |_| {}).await;
    let (_, a) = s
        .post(
            "/v1/bans",
            json!({"token": "a", "duration": 30, "reason": "r"}),
        )
        .await;
    assert_eq!(a["ban"]["until"], T0 + 30, "not escalated itself");
    s.advance(60);
    for _ in 0..3 {
        s.fail_login("a").await;
    }
    let (_, b) = s.get("/v1/bans/a").await;
    assert_eq!(b["origin"], "rule");
    assert_eq!(
        b["until"],
        T0 + 60 + 200,
        "the second ban of `a`: 100 s × 2"
    );
}

#[tokio::test]
async fn allowed_clients_are_never_counted_nor_banned() {
    let s = start(&seed_example(), |c| {
        c.allow = vec![
            "203.0.113.0/24".parse().unwrap(),
            "2001:db8:a::/48".parse().unwrap(),
        ];
    })
    .await;
    // A body token that is an allowed address (or network): passes, uncounted.
    for _ in 0..20 {
        assert!(s.fail_login("203.0.113.9").await);
        assert!(s.fail_login("2001:db8:a:1::/64").await);
    }
    let (_, st) = s.get("/v1/status/203.0.113.9/login_failed").await;
    assert_eq!(st["tiers"][0]["value"], 0, "never counted");
    // /detect's ip.
    for _ in 0..20 {
        assert!(!s.detect_ip("203.0.113.10").await);
        assert!(!s.detect_ip("2001:db8:a:1::5").await);
    }
    // Never banned by hand or by a fire.
    for token in ["203.0.113.9", "2001:db8:a:1::5", "2001:db8:a:1::/64"] {
        let (status, answer) = s
            .post("/v1/bans", json!({"token": token, "duration": 60}))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{token}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("[serve] allow"));
    }
    let (status, _) = s
        .post(
            "/v1/now",
            json!({"token": "203.0.113.9", "metric": "login_failed"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, list) = s.get("/v1/bans").await;
    assert_eq!(list["bans"], json!([]));
    // Others are counted as ever.
    for _ in 0..9 {
        assert!(s.fail_login("198.51.100.1").await);
    }
    assert!(!s.fail_login("198.51.100.1").await);
}

#[tokio::test]
async fn an_allowed_peer_is_never_counted() {
    let s = start(&seed_example(), |c| {
        c.token_from = TokenFrom::Peer;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.allow = vec!["192.0.2.0/24".parse().unwrap()];
    })
    .await;
    for _ in 0..20 {
        assert!(s.fail_login_from("192.0.2.44").await);
    }
    for _ in 0..9 {
        assert!(s.fail_login_from("198.51.100.44").await);
    }
    assert!(!s.fail_login_from("198.51.100.44").await);
}

#[tokio::test]
async fn twelve_addresses_of_one_64_reach_the_detect_limit_together() {
    let s = start("", |_| {}).await;
    let mut answers = Vec::new();
    for i in 1..=12 {
        answers.push(s.detect_ip(&format!("2001:db8:5:6::{i:x}")).await);
    }
    // 10 requests allowed per IP and event name in 5 s: the 11th is the attack.
    assert_eq!(answers.iter().filter(|a| **a).count(), 2, "{answers:?}");
    assert!(answers[10] && answers[11]);
    assert!(
        s.detect_ip("2001:db8:5:7::1").await.eq(&false),
        "the next /64 is another client"
    );
    let (_, list) = s.get("/v1/bans").await;
    assert_eq!(list["bans"][0]["token"], "2001:db8:5:6::/64");
}

#[tokio::test]
async fn with_prefix_128_each_ipv6_address_counts_alone() {
    let s = start("[serve]\nipv6_prefix = 128\n", |_| {}).await;
    for i in 1..=12 {
        assert!(!s.detect_ip(&format!("2001:db8:5:6::{i:x}")).await);
    }
}

#[tokio::test]
async fn peers_count_by_their_64_too() {
    let s = start(&seed_example(), |c| {
        c.token_from = TokenFrom::Peer;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    for i in 1..=9 {
        assert!(s.fail_login_from(&format!("2001:db8:9:9::{i}")).await);
    }
    assert!(
        !s.fail_login_from("2001:db8:9:9::ffff").await,
        "the 10th of the /64"
    );
    let (_, list) = s.get("/v1/bans").await;
    assert_eq!(list["bans"][0]["token"], "2001:db8:9:9::/64");
}
