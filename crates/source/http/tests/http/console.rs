//! The live console's endpoints over real HTTP: the page and its headers, the admin event
//! stream (token, snapshot, decisions as stored, rates, the cap on streams, the end of
//! streams at shutdown) and the decision log.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{seed_example, start, Server};

/// Reads SSE events from a streaming response: `(event, data as JSON)`.
struct Events {
    response: reqwest::Response,
    buf: String,
}

impl Events {
    async fn open(s: &Server, token: Option<&str>) -> Result<Events, StatusCode> {
        let mut req = s.http.get(format!("{}/v1/events", s.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let response = req.send().await.unwrap();
        if response.status() != StatusCode::OK {
            return Err(response.status());
        }
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        Ok(Events {
            response,
            buf: String::new(),
        })
    }

    /// The next event (keep-alive comments skipped), within `wait`; `None` if the stream ended.
    async fn next(&mut self, wait: Duration) -> Option<(String, Value)> {
        tokio::time::timeout(wait, async {
            loop {
                if let Some(cut) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..cut + 2).collect();
                    let mut name = String::new();
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(n) = line.strip_prefix("event:") {
                            name = n.trim().to_owned();
                        } else if let Some(d) = line.strip_prefix("data:") {
                            data.push_str(d.trim_start());
                        }
                    }
                    if !data.is_empty() {
                        return Some((name, serde_json::from_str(&data).unwrap()));
                    }
                    continue;
                }
                let chunk = self.response.chunk().await.ok()??;
                self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("an event in time")
    }

    /// Skips events until one named `name`.
    async fn until(&mut self, name: &str) -> Value {
        loop {
            let (n, v) = self.next(Duration::from_secs(10)).await.expect("open");
            if n == name {
                return v;
            }
        }
    }
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy() {
    let s = start(&seed_example(), |c| c.admin_token = Some("s3cret".into())).await;
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path} needs no token");
        let h = r.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        let body = r.text().await.unwrap();
        assert!(!body.is_empty());
        if path == "/ui" {
            assert!(body.contains(r#"data-mode="serve""#), "{body}");
            assert!(!body.contains("<script>"), "no inline script");
        }
    }
}

#[tokio::test]
async fn the_event_stream_needs_the_token_and_tells_each_decision() {
    let s = start(&seed_example(), |c| c.admin_token = Some("s3cret".into())).await;
    assert_eq!(
        Events::open(&s, None).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        Events::open(&s, Some("wrong")).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    // A ban before the console opens is in its snapshot.
    let fire = |token: &'static str| {
        s.http
            .post(format!("{}/v1/now", s.base))
            .bearer_auth("s3cret")
            .json(&json!({"token": token, "metric": "login_failed"}))
            .send()
    };
    assert_eq!(fire("198.51.100.1").await.unwrap().status(), StatusCode::OK);
    let mut ev = Events::open(&s, Some("s3cret")).await.unwrap();
    let (name, snap) = ev.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(name, "snapshot");
    assert_eq!(snap["bans"][0]["token"], "198.51.100.1");
    assert_eq!(snap["log"][0]["verb"], "BAN");
    assert!(snap["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "login_failed"));
    // A ban and an unban made now arrive as they are stored.
    assert_eq!(fire("198.51.100.2").await.unwrap().status(), StatusCode::OK);
    let d = ev.until("decision").await;
    assert_eq!(
        (d["verb"].as_str(), d["token"].as_str()),
        (Some("BAN"), Some("198.51.100.2"))
    );
    let r = s
        .http
        .delete(format!("{}/v1/bans/198.51.100.2", s.base))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let d = ev.until("decision").await;
    assert_eq!(d["verb"], "UNBAN");
    // Rates: the events counted per metric, and who is closest to a limit.
    for _ in 0..3 {
        s.post(
            "/v1/incr",
            json!({"token": "192.0.2.9", "metric": "login_failed"}),
        )
        .await;
    }
    let mut tries = 0;
    let rates = loop {
        tries += 1;
        assert!(tries < 10, "the rates never showed the events");
        let r = ev.until("rates").await;
        let m = r["metrics"].as_array().unwrap();
        let login = m.iter().find(|m| m["metric"] == "login_failed").unwrap();
        if login["total"] == 3 && !r["busiest"].as_array().unwrap().is_empty() {
            break r;
        }
    };
    let busy = &rates["busiest"][0];
    assert_eq!(busy["token"], "192.0.2.9");
    assert_eq!(busy["tiers"][0][0], 3, "measure");
    // The log, filtered by token.
    let r = s
        .http
        .get(format!("{}/v1/log?token=198.51.100.2", s.base))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    let log: Value = r.json().await.unwrap();
    let verbs: Vec<&str> = log["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["verb"].as_str().unwrap())
        .collect();
    assert_eq!(verbs, ["BAN", "UNBAN"]);
    // A limit out of range or not a number is a JSON 400, as on every route.
    for query in ["limit=0", "limit=5001", "limit=abc"] {
        let r = s
            .http
            .get(format!("{}/v1/log?{query}", s.base))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].is_string(), "{query}: {body}");
    }
}

#[tokio::test]
async fn open_streams_are_capped() {
    let s = start(&seed_example(), |c| {
        c.max_connections = 64;
        c.max_connections_per_peer = 64;
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..banhammer_http::MAX_CONSOLES {
        let mut ev = Events::open(&s, None).await.unwrap();
        ev.until("snapshot").await;
        open.push(ev);
    }
    let over = s
        .http
        .get(format!("{}/v1/events", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = over.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("consoles"),
        "{body}"
    );
    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("banhammer_consoles_open {}", open.len())),
        "{metrics}"
    );
    // Closing one makes room (once the service sees the connection closed).
    drop(open.pop());
    let mut room = false;
    for _ in 0..100 {
        let r = s
            .http
            .get(format!("{}/v1/events", s.base))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            room = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(room, "a closed console gives its slot back");
}
