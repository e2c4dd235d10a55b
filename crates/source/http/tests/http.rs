//! The real service on 127.0.0.1:0, spoken to over HTTP, with its clock injected.
//!
//! Contents: the seed example end to end · the detector's boundaries and ban expiry · every
//! 422 · bodies too large or malformed · the admin token and failed attempts per address ·
//! X-Forwarded-For · metrics · the OpenAPI document against the routes · connections
//! (`http/connections.rs`): silent sockets, the cap, the per-peer limit, idle timeouts ·
//! `/detect` bodies as the original service reads them (`http/detect_input.rs`): no form
//! fields, repeated fields, over-size bodies · IPv4-mapped clients (`http/mapped.rs`) ·
//! the forward-auth check (`http/check.rs`) · the live console's page, event stream and
//! log (`http/console.rs`) ·
//! CrowdSec's bouncer routes (`http/crowdsec.rs`) · bans by hand, allow lists and IPv6
//! prefixes (`http/operator.rs`).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;

use banhammer_config::{Config, ServeSettings, TokenFrom};
use banhammer_core::{ManualClock, NamedNoop, Seconds, Timestamp};
use banhammer_http::AppState;
use banhammer_runtime::{MemoryBackend, Runtime, RuntimeGuard};
use banhammer_store_sqlite::DecisionStore;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[path = "http/check.rs"]
mod check;
#[path = "http/connections.rs"]
mod connections;
#[path = "http/console.rs"]
mod console;
#[path = "http/crowdsec.rs"]
mod crowdsec;
#[path = "http/detect_input.rs"]
mod detect_input;
#[path = "http/mapped.rs"]
mod mapped;
#[path = "http/operator.rs"]
mod operator;

const T0: i64 = 1_700_000_000;

struct Server {
    base: String,
    addr: SocketAddr,
    clock: ManualClock,
    _guard: RuntimeGuard,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

async fn start(config: &str, settings: impl FnOnce(&mut ServeSettings)) -> Server {
    start_on("127.0.0.1:0", config, settings).await
}

/// [`start`] listening on `listen`; the server is spoken to on 127.0.0.1 at the port it got.
async fn start_on(listen: &str, config: &str, settings: impl FnOnce(&mut ServeSettings)) -> Server {
    let mut config = Config::parse(config, "test.toml").unwrap();
    config.add_detector();
    config.engine.rates = true;
    settings(&mut config.serve);
    let rules = config
        .ruleset(&|n| Arc::new(NamedNoop(n.to_owned())))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = DecisionStore::open(&dir.path().join("decisions.sqlite")).unwrap();
    let clock = ManualClock::new(Timestamp::from_unix(T0));
    let rules = Arc::new(rules);
    let backend = MemoryBackend::new(
        Arc::clone(&rules),
        Arc::new(clock.clone()),
        NonZeroUsize::new(4).unwrap(),
    );
    let guard = Runtime::start(rules, Arc::new(clock.clone()), store, Box::new(backend)).unwrap();
    let state = AppState::new(Arc::clone(guard.runtime()), config.serve.clone());
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], listener.local_addr().unwrap().port()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(banhammer_http::run(listener, state, async move {
        let _ = stopped.await;
    }));
    Server {
        base: format!("http://{addr}"),
        addr,
        clock,
        _guard: guard,
        _stop: stop,
        _dir: dir,
        http: reqwest::Client::new(),
    }
}

impl Server {
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn detect_form(&self, fields: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields {
            form = form.text((*k).to_owned(), (*v).to_owned());
        }
        let r = self
            .http
            .put(format!("{}/detect", self.base))
            .multipart(form)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn attack(&self, ip: &str, email: &str) -> bool {
        let (status, body) = self
            .detect_form(&[("email", email), ("event_name", "login"), ("ip", ip)])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["detected_attack"].as_bool().unwrap()
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Seconds::new(secs));
    }
}

fn seed_example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../examples/banhammer.toml"
    ))
    .unwrap()
}

#[tokio::test]
async fn the_seed_example_end_to_end() {
    let s = start(&seed_example(), |_| {}).await;
    for i in 1..=9 {
        let (status, body) = s
            .post(
                "/v1/incr?rates=true",
                json!({"token": "203.0.113.7", "metric": "login_failed"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["passed"], true, "failure {i} of 10");
        assert_eq!(body["stats"]["token_rate_60m"], i);
    }
    let (_, body) = s
        .post(
            "/v1/incr",
            json!({"token": "203.0.113.7", "metric": "login_failed"}),
        )
        .await;
    assert_eq!(
        body,
        json!({"passed": false}),
        "the 10th failure in an hour blocks; no stats unasked"
    );
    let (status, ban) = s.get("/v1/bans/203.0.113.7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ban["rule"], "login_failed");
    assert_eq!(ban["value"], 10);
    assert_eq!(ban["until"], T0 + 3600);
    // `now` fires tier 1 (report_central, a notice: the token still passes).
    let (status, stats) = s
        .post(
            "/v1/now",
            json!({"token": "198.51.100.1", "metric": "login_failed", "threshold": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        stats,
        json!({"token_rate_1m": 0, "token_rate_10m": 0, "token_rate_60m": 0})
    );
    let (_, st) = s.get("/v1/status/203.0.113.7/login_failed").await;
    assert_eq!(
        st["tiers"][0],
        json!({"value": 10, "holds": true, "limit": 10, "window": 3600})
    );
    assert_eq!(st["ban"]["until"], T0 + 3600);
    // status_all, paged one item at a time through every token.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = s.get(&format!("/v1/status?limit=1{cursor}")).await;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["token"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["203.0.113.7"]);
    // An operator unbans: the token passes again.
    let req = s
        .http
        .delete(format!("{}/v1/bans/203.0.113.7", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(req.status(), StatusCode::OK);
    assert_eq!(s.get("/v1/bans/203.0.113.7").await.0, StatusCode::NOT_FOUND);
    s.advance(1);
    let (_, body) = s
        .post(
            "/v1/incr",
            json!({"token": "203.0.113.7", "metric": "login_successful"}),
        )
        .await;
    assert_eq!(body["passed"], true);
}

#[tokio::test]
async fn the_detector_allows_ten_requests_and_two_emails() {
    let s = start("", |_| {}).await;
    for _ in 0..10 {
        assert!(
            !s.attack("192.0.2.1", "one@example.com").await,
            "up to 10 requests pass"
        );
    }
    assert!(
        s.attack("192.0.2.1", "one@example.com").await,
        "the 11th in 5 s is the attack"
    );

    assert!(!s.attack("192.0.2.2", "a@example.com").await);
    assert!(
        !s.attack("192.0.2.2", "b@example.com").await,
        "two distinct emails pass"
    );
    assert!(
        !s.attack("192.0.2.2", "A@EXAMPLE.COM ").await,
        "the same email, however written"
    );
    assert!(
        s.attack("192.0.2.2", "c@example.com").await,
        "the third distinct email is the attack"
    );

    // Other event names count apart, but the IP itself is banned.
    let (_, body) = s
        .detect_form(&[
            ("email", "x@example.com"),
            ("event_name", "signup"),
            ("ip", "192.0.2.2"),
        ])
        .await;
    assert_eq!(body["detected_attack"], true);
    assert!(
        !s.attack("192.0.2.3", "a@example.com").await,
        "other IPs are not affected"
    );
}

#[tokio::test]
async fn a_detected_ip_is_answered_true_for_30_seconds() {
    let s = start("", |_| {}).await;
    for _ in 0..11 {
        s.attack("192.0.2.9", "one@example.com").await;
    }
    s.advance(29);
    assert!(
        s.attack_quietly("192.0.2.9").await,
        "banned until 30 s after the last holding request"
    );
    s.advance(36);
    assert!(!s.attack_quietly("192.0.2.9").await, "the ban has run out");
}

impl Server {
    /// A detect call on another event name, so as not to count towards `login`.
    async fn attack_quietly(&self, ip: &str) -> bool {
        let (_, body) = self
            .detect_form(&[
                ("email", "z@example.com"),
                ("event_name", "probe"),
                ("ip", ip),
            ])
            .await;
        body["detected_attack"].as_bool().unwrap()
    }
}

#[tokio::test]
async fn every_blank_field_and_only_those_is_named() {
    let s = start("", |_| {}).await;
    let fields = ["email", "event_name", "ip"];
    for mask in 1u8..8 {
        let blank: Vec<&str> = fields
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, f)| *f)
            .collect();
        // Blank as missing for even masks, as whitespace for odd ones.
        let form: Vec<(&str, &str)> = fields
            .iter()
            .filter_map(|f| match (blank.contains(f), mask % 2) {
                (true, 0) => None,
                (true, _) => Some((*f, "   ")),
                (false, _) => Some((*f, if *f == "ip" { "192.0.2.1" } else { "x" })),
            })
            .collect();
        let (status, body) = s.detect_form(&form).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let expected: serde_json::Map<String, Value> = blank
            .iter()
            .map(|f| ((*f).to_owned(), json!(["can't be blank"])))
            .collect();
        assert_eq!(body, json!({"errors": expected}), "blank: {blank:?}");
    }
    let (status, body) = s
        .detect_form(&[
            ("email", "a@b.c"),
            ("event_name", "login"),
            ("ip", "999.1.1.1"),
        ])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body, json!({"errors": {"ip": ["is invalid"]}}));
}

#[tokio::test]
async fn the_detector_reads_urlencoded_and_json_too() {
    let s = start("", |_| {}).await;
    let r = s
        .http
        .put(format!("{}/detect", s.base))
        .form(&[
            ("email", "a@b.c"),
            ("event_name", "login"),
            ("ip", "2001:db8::1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detected_attack": false})
    );
    let r = s
        .http
        .put(format!("{}/detect", s.base))
        .json(&json!({"email": "", "event_name": "login", "ip": "2001:db8::1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"errors": {"email": ["can't be blank"]}})
    );
    // Without a content type the body carries no form fields (`http/detect_input.rs`).
    let r = s
        .http
        .put(format!("{}/detect", s.base))
        .body("email=a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"]["email"],
        json!(["can't be blank"])
    );
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused_with_json() {
    let s = start(&seed_example(), |c| c.max_body_bytes = 1024).await;
    let big = json!({"token": "a".repeat(4096), "metric": "login_failed"});
    let r = s
        .http
        .post(format!("{}/v1/incr", s.base))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    let r = s
        .http
        .post(format!("{}/v1/incr", s.base))
        .header("content-type", "application/json")
        .body("{\"token\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("JSON"));
    let (status, body) = s
        .post("/v1/incr", json!({"token": "a", "metric": "nope"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body, json!({"error": "unknown metric `nope`"}));
    let (status, _) = s
        .post(
            "/v1/incr",
            json!({"token": "a", "metric": "login_failed", "extra": 1}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "unknown fields are refused"
    );
    let (status, body) = s
        .post("/v1/incr", json!({"token": "", "metric": "login_failed"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // A huge multipart body to /detect.
    let form = reqwest::multipart::Form::new().text("email", "x".repeat(8192));
    let r = s
        .http
        .put(format!("{}/detect", s.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn admin_routes_need_the_bearer_token() {
    let s = start(&seed_example(), |c| {
        c.admin_token = Some("s3cret".to_owned())
    })
    .await;
    for (method, path) in [
        ("GET", "/v1/bans"),
        ("POST", "/v1/bans"),
        ("GET", "/v1/status"),
        ("GET", "/v1/bans/x"),
        ("DELETE", "/v1/bans/x"),
    ] {
        for auth in [None, Some("Bearer wrong"), Some("s3cret")] {
            let mut req = s
                .http
                .request(method.parse().unwrap(), format!("{}{path}", s.base));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {auth:?}"
            );
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
        }
        let r = s
            .http
            .request(method.parse().unwrap(), format!("{}{path}", s.base))
            .header("authorization", "Bearer s3cret")
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    let (status, _) = s
        .post("/v1/incr", json!({"token": "a", "metric": "login_failed"}))
        .await;
    assert_eq!(status, StatusCode::OK, "incr is not an admin route");
}

#[tokio::test]
async fn guessing_the_admin_token_is_blocked_per_address() {
    let s = start(&seed_example(), |c| {
        c.admin_token = Some("s3cret".to_owned())
    })
    .await;
    let from = |host: u8| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, host]))
            .build()
            .unwrap()
    };
    let (guesser, admin) = (from(2), from(3));
    let bans = |client: &reqwest::Client, token: &str| {
        let req = client
            .get(format!("{}/v1/bans", s.base))
            .header("authorization", format!("Bearer {token}"));
        async move { req.send().await.unwrap() }
    };
    for i in 1..=10 {
        let r = bans(&guesser, &format!("guess{i}")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "failure {i} of 10");
    }
    // Blocked for 5 minutes, whatever it sends, the right token included.
    for token in ["guess11", "s3cret"] {
        let r = bans(&guesser, token).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{token}");
        assert_eq!(r.headers()["retry-after"], "300");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("retry in 300 s"));
    }
    assert_eq!(
        bans(&admin, "s3cret").await.status(),
        StatusCode::OK,
        "the right token from another address works"
    );
    assert_eq!(
        bans(&admin, "wrong").await.status(),
        StatusCode::UNAUTHORIZED,
        "the other address has its own count"
    );
    s.advance(299);
    let r = bans(&guesser, "s3cret").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    s.advance(1);
    assert_eq!(
        bans(&guesser, "s3cret").await.status(),
        StatusCode::OK,
        "the block has run out"
    );
    let (_, all) = s.get_as(&admin, "/v1/bans").await;
    assert_eq!(
        all["bans"],
        json!([]),
        "the block is not one of the service's bans"
    );
}

impl Server {
    /// `GET path` from `client` with the admin token.
    async fn get_as(&self, client: &reqwest::Client, path: &str) -> (StatusCode, Value) {
        let r = client
            .get(format!("{}{path}", self.base))
            .header("authorization", "Bearer s3cret")
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn forwarded_for_is_honoured_only_from_trusted_proxies() {
    let incr_as = |s: &Server, xff: &'static str| {
        let req = s
            .http
            .post(format!("{}/v1/incr?rates=true", s.base))
            .header("x-forwarded-for", xff)
            .json(&json!({"metric": "login_failed"}));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let trusted = start(&seed_example(), |c| {
        c.token_from = TokenFrom::Peer;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    incr_as(&trusted, "198.51.100.4").await;
    let (_, st) = trusted.get("/v1/status/198.51.100.4/login_failed").await;
    assert_eq!(
        st["tiers"][0]["value"], 1,
        "counted for the forwarded client"
    );

    let untrusted = start(&seed_example(), |c| c.token_from = TokenFrom::Peer).await;
    incr_as(&untrusted, "198.51.100.4").await;
    let (_, st) = untrusted.get("/v1/status/198.51.100.4/login_failed").await;
    assert_eq!(
        st["tiers"][0]["value"], 0,
        "a stranger's header is not believed"
    );
    let (_, st) = untrusted.get("/v1/status/127.0.0.1/login_failed").await;
    assert_eq!(st["tiers"][0]["value"], 1, "counted for the peer");
}

#[tokio::test]
async fn metrics_count_routes_and_decisions_never_tokens() {
    let s = start("", |_| {}).await;
    for _ in 0..11 {
        s.attack("192.0.2.77", "one@example.com").await;
    }
    let text = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"banhammer_http_requests_total{route="/detect",method="PUT",status="200"} 11"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"banhammer_decisions_total{decision="ban"} 1"#),
        "{text}"
    );
    assert!(text.contains("banhammer_active_bans 1"), "{text}");
    assert!(
        text.contains("banhammer_background_dropped_total 0"),
        "{text}"
    );
    assert!(!text.contains("192.0.2.77"), "no address in any label");
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let s = start(&seed_example(), |_| {}).await;
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<String> = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            let concrete = path
                .replace("{token}", "nobody")
                .replace("{metric}", "login_failed");
            let r = s
                .http
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{concrete}", s.base),
                )
                .send()
                .await
                .unwrap();
            assert_ne!(
                r.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            if r.status() == StatusCode::NOT_FOUND {
                // Routed, and the resource is missing: our JSON, not the router's empty 404.
                let body: Value = r.json().await.unwrap();
                assert!(body["error"].is_string(), "{method} {path} is routed");
            }
        }
    }
    documented.sort();
    assert_eq!(
        documented,
        [
            "DELETE /v1/bans/{token}",
            "GET /healthz",
            "GET /metrics",
            "GET /openapi.json",
            "GET /ui",
            "GET /ui/app.css",
            "GET /ui/app.js",
            "GET /v1/bans",
            "GET /v1/bans/{token}",
            "GET /v1/check",
            "GET /v1/check/{metric}",
            "GET /v1/decisions",
            "GET /v1/decisions/stream",
            "GET /v1/events",
            "GET /v1/log",
            "GET /v1/status",
            "GET /v1/status/{token}/{metric}",
            "POST /v1/bans",
            "POST /v1/incr",
            "POST /v1/now",
            "PUT /detect",
        ]
    );
    // An undocumented path is not served.
    assert_eq!(s.get("/v2/incr").await.0, StatusCode::NOT_FOUND);
}
