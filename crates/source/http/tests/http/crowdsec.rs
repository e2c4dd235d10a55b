//! CrowdSec's bouncer routes ("Bans that block" issue, part 4): `/v1/decisions/stream` per
//! key (startup, then what started and ended, an extension sent again with its new duration),
//! addresses, /64 ranges and tokens that are neither, `/v1/decisions?ip=` as bouncers in live
//! mode ask it, and `X-Api-Key` refused in CrowdSec's shape.

use serde_json::{json, Value};

use super::{seed_example, start, Server, StatusCode};

const KEY: &str = "bouncer-one-0123456789abcdef";
const OTHER: &str = "bouncer-two-fedcba9876543210";

/// The seed example (`login_failed` tier 0 bans for an hour) with two bouncer keys.
async fn with_keys() -> Server {
    start(&seed_example(), |s| {
        s.bouncer_api_keys = vec![KEY.to_owned(), OTHER.to_owned()];
        s.admin_token = Some("s3cret".to_owned());
    })
    .await
}

impl Server {
    /// `GET path` with `X-Api-Key: key` (none if `None`): status, body text, `Retry-After`.
    async fn lapi(&self, key: Option<&str>, path: &str) -> (StatusCode, String, Option<String>) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        let r = req.send().await.unwrap();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (r.status(), r.text().await.unwrap(), retry)
    }

    /// One stream pull by `key`: its `new` and `deleted`.
    async fn pull(&self, key: &str, startup: bool) -> (Vec<Value>, Vec<Value>) {
        let path = format!("/v1/decisions/stream?startup={startup}");
        let (status, body, _) = self.lapi(Some(key), &path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let list = |k: &str| v[k].as_array().unwrap_or_else(|| panic!("{body}")).clone();
        (list("new"), list("deleted"))
    }

    /// `GET /v1/decisions?query` by `KEY`: the decisions, `None` for `null`.
    async fn live(&self, query: &str) -> Option<Vec<Value>> {
        let (status, body, _) = self
            .lapi(Some(KEY), &format!("/v1/decisions?{query}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        serde_json::from_str::<Option<Vec<Value>>>(&body).unwrap()
    }

    /// Fires `login_failed` tier 0 for `token`: bans it for an hour from now.
    async fn ban_now(&self, token: &str) {
        let r = self
            .http
            .post(format!("{}/v1/now", self.base))
            .bearer_auth("s3cret")
            .json(&json!({"token": token, "metric": "login_failed"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    async fn unban_now(&self, token: &str) {
        let r = self
            .http
            .delete(format!("{}/v1/bans/{token}", self.base))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}

/// `(value, duration)` of each decision.
fn brief(decisions: &[Value]) -> Vec<(String, String)> {
    decisions
        .iter()
        .map(|d| {
            (
                d["value"].as_str().unwrap().to_owned(),
                d["duration"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(v, d)| ((*v).to_owned(), (*d).to_owned()))
        .collect()
}

#[tokio::test]
async fn the_stream_gives_every_ban_at_startup_then_what_started_and_ended() {
    let s = with_keys().await;
    let (status, body, _) = s.lapi(Some(KEY), "/v1/decisions/stream?startup=true").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"new":[],"deleted":[]}"#)
    );

    s.ban_now("192.0.2.1").await;
    let (new, deleted) = s.pull(KEY, false).await;
    assert!(deleted.is_empty());
    assert_eq!(new.len(), 1);
    let id = new[0]["id"].as_u64().unwrap();
    assert_eq!(
        new[0],
        json!({"id": id, "origin": "banhammer", "type": "ban", "scope": "Ip",
               "value": "192.0.2.1", "duration": "1h0m0s", "scenario": "login_failed/tier-0"})
    );
    assert_eq!(s.pull(KEY, false).await, (vec![], vec![]), "nothing new");

    s.ban_now("192.0.2.2").await;
    s.advance(10);
    let (new, deleted) = s.pull(KEY, false).await;
    assert_eq!(brief(&new), pairs(&[("192.0.2.2", "59m50s")]));
    assert!(deleted.is_empty());

    // Each key has its own stream: the other bouncer starts up and gets both.
    let (new, _) = s.pull(OTHER, true).await;
    assert_eq!(
        brief(&new),
        pairs(&[("192.0.2.1", "59m50s"), ("192.0.2.2", "59m50s")])
    );

    s.unban_now("192.0.2.1").await;
    let (new, deleted) = s.pull(KEY, false).await;
    assert!(new.is_empty());
    assert_eq!(brief(&deleted), pairs(&[("192.0.2.1", "0s")]));
    assert_eq!(deleted[0]["id"].as_u64(), Some(id), "the ban's id");

    // An expired ban is deleted too.
    s.advance(3600);
    let (new, deleted) = s.pull(KEY, false).await;
    assert!(new.is_empty());
    assert_eq!(brief(&deleted), pairs(&[("192.0.2.2", "0s")]));
    assert_eq!(s.pull(KEY, false).await, (vec![], vec![]));
    // A startup pull says nothing of ended bans.
    assert_eq!(s.pull(OTHER, true).await, (vec![], vec![]));
}

#[tokio::test]
async fn an_extended_ban_is_sent_again_with_its_new_duration() {
    let s = with_keys().await;
    s.ban_now("192.0.2.1").await;
    let (new, _) = s.pull(KEY, true).await;
    let id = new[0]["id"].clone();
    s.advance(120);
    s.ban_now("192.0.2.1").await;
    let (new, deleted) = s.pull(KEY, false).await;
    // Deleted first, then new: the firewall bouncer skips an address it already holds, so the
    // new timeout only reaches the kernel through a delete and an add.
    assert_eq!(brief(&deleted), pairs(&[("192.0.2.1", "0s")]));
    assert_eq!(brief(&new), pairs(&[("192.0.2.1", "1h0m0s")]));
    assert_eq!(
        (&new[0]["id"], &deleted[0]["id"]),
        (&id, &id),
        "one ban, one id"
    );
    // A few seconds more are not worth a resend.
    s.advance(10);
    s.ban_now("192.0.2.1").await;
    assert_eq!(s.pull(KEY, false).await, (vec![], vec![]));
}

#[tokio::test]
async fn addresses_and_ranges_reach_bouncers_other_tokens_do_not() {
    let s = with_keys().await;
    for token in [
        "2001:db8:1:2::/64",
        "2001:DB8::7",
        "::ffff:198.51.100.9",
        "alice",
        "example.com",
    ] {
        s.ban_now(token).await;
    }
    let (new, _) = s.pull(KEY, true).await;
    let scoped: Vec<(&str, &str)> = new
        .iter()
        .map(|d| (d["scope"].as_str().unwrap(), d["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        scoped,
        [
            ("Ip", "198.51.100.9"),
            ("Range", "2001:db8:1:2::/64"),
            ("Ip", "2001:db8::7")
        ]
    );
    // Bouncers may ask for one scope (`scopes=ip`, any case).
    let (status, body, _) = s
        .lapi(Some(OTHER), "/v1/decisions/stream?startup=true&scopes=IP")
        .await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["new"].as_array().unwrap().len(), 2, "{body}");
}

#[tokio::test]
async fn live_mode_asks_about_one_address_and_gets_null_when_clear() {
    let s = with_keys().await;
    for token in ["192.0.2.1", "2001:db8:1:2::/64", "alice"] {
        s.ban_now(token).await;
    }
    let one = s.live("ip=192.0.2.1").await.unwrap();
    assert_eq!(brief(&one), pairs(&[("192.0.2.1", "1h0m0s")]));
    assert_eq!(one[0]["scope"], "Ip");
    assert_eq!(s.live("ip=::ffff:192.0.2.1").await.unwrap(), one);
    let (_, body, _) = s.lapi(Some(KEY), "/v1/decisions?ip=192.0.2.99").await;
    assert_eq!(body, "null", "as CrowdSec answers none");
    // An address inside a banned range gets the range.
    let range = s.live("ip=2001:db8:1:2::5").await.unwrap();
    assert_eq!(brief(&range), pairs(&[("2001:db8:1:2::/64", "1h0m0s")]));
    assert_eq!(range[0]["scope"], "Range");
    assert_eq!(s.live("range=2001:db8:1:2::/64").await.unwrap(), range);
    assert_eq!(s.live("range=2001:db8:1::/48").await, None);
    assert_eq!(
        s.live("range=2001:db8:1::/48&contains=false")
            .await
            .unwrap(),
        range
    );
    assert_eq!(
        s.live("scope=range&value=2001:db8:1:2::/64").await.unwrap(),
        range
    );
    assert_eq!(s.live("ip=192.0.2.1&type=captcha").await, None);
    assert_eq!(s.live("ip=192.0.2.1&origins=crowdsec,cscli").await, None);
    assert_eq!(
        s.live("ip=192.0.2.1&origins=cscli,banhammer")
            .await
            .unwrap(),
        one
    );
    assert_eq!(
        s.live("scenarios_containing=LOGIN_FAILED")
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(s.live("scenarios_not_containing=tier-0").await, None);
    assert_eq!(s.live("").await.unwrap().len(), 2, "never `alice`");
    let (status, body, _) = s.lapi(Some(KEY), "/v1/decisions?ip=alice").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"message": "`alice` is not an IP address or range"})
    );
}

#[tokio::test]
async fn keys_are_checked_and_refused_as_crowdsec_refuses_them() {
    let forbidden = json!({"message": "access forbidden"});
    let none = start(&seed_example(), |_| {}).await;
    let (status, body, _) = none.lapi(Some(KEY), "/v1/decisions/stream").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no keys configured");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), forbidden);

    let s = with_keys().await;
    for (key, path) in [
        (None, "/v1/decisions/stream?startup=true"),
        (Some("s3cret"), "/v1/decisions/stream?startup=true"),
        (Some(&KEY[1..]), "/v1/decisions?ip=192.0.2.1"),
    ] {
        let (status, body, _) = s.lapi(key, path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{key:?}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), forbidden);
    }
    // HEAD (a connection check) changes nothing: the next pull still gets the ban.
    s.pull(KEY, true).await;
    s.ban_now("192.0.2.1").await;
    let head = s
        .http
        .head(format!("{}/v1/decisions/stream", s.base))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(s.pull(KEY, false).await.0.len(), 1);

    // Guessing is limited per address, apart from the admin routes: two wrong keys were
    // sent above; 8 more block the address, the right key included.
    for _ in 0..8 {
        let (status, _, _) = s.lapi(Some("guess"), "/v1/decisions/stream").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, body, retry) = s.lapi(Some(KEY), "/v1/decisions/stream").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(retry.as_deref(), Some("300"));
    assert!(serde_json::from_str::<Value>(&body).unwrap()["message"].is_string());
    let r = s
        .http
        .get(format!("{}/v1/bans", s.base))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "admin routes are not blocked");
}

#[tokio::test]
async fn a_ban_by_hand_reaches_bouncers_as_a_manual_decision() {
    let s = with_keys().await;
    let r = s
        .http
        .post(format!("{}/v1/bans", s.base))
        .bearer_auth("s3cret")
        .json(&json!({"token": "2001:db8:7:7::1", "duration": "2h", "reason": "ticket #42"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (new, _) = s.pull(KEY, true).await;
    assert_eq!(new.len(), 1);
    assert_eq!(
        (
            &new[0]["value"],
            &new[0]["scope"],
            &new[0]["duration"],
            &new[0]["scenario"]
        ),
        (
            &json!("2001:db8:7:7::/64"),
            &json!("Range"),
            &json!("2h0m0s"),
            &json!("manual")
        )
    );
    s.unban_now("2001:db8:7:7::1").await;
    let (_, deleted) = s.pull(KEY, false).await;
    assert_eq!(deleted.len(), 1);
}
