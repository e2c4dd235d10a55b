//! Issue 16 (operability) through the real binary: every HTTP error is the documented JSON,
//! `/openapi.json` passes a real OpenAPI validator, logs carry no colour off a terminal (and
//! JSON when asked), `/metrics` speaks both exposition formats, misconfiguration is said out
//! loud, and `rediss://` reaches a Redis over TLS.

use std::process::Child;

use serde_json::Value;

mod common;

/// A `serve` on the default configuration, killed when dropped.
struct Serve {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn start() -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("d.sqlite");
        let (child, base) = common::start_serve(&["--db".as_ref(), db.as_os_str()]);
        Serve {
            child,
            base,
            _dir: dir,
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every error answer: its status, and a JSON body `{"error": "…"}` with a message.
#[test]
fn every_error_is_the_documented_json() {
    let serve = Serve::start();
    let client = reqwest::blocking::Client::new();
    let url = |path: &str| format!("{}{path}", serve.base);
    let cases = [
        (client.get(url("/no/such/route")), 404),
        (client.get(url("/v1/incr")), 405),
        (client.delete(url("/healthz")), 405),
        (client.get(url("/v1/status?limit=abc")), 400),
        (client.get(url("/v1/status?limit=0")), 400),
        (client.get(url("/v1/status?limit=1001")), 400),
        (
            client
                .post(url("/v1/incr?rates=maybe"))
                .json(&serde_json::json!({"token": "t", "metric": "m"})),
            400,
        ),
    ];
    for (request, status) in cases {
        let request = request.build().unwrap();
        let what = format!("{} {}", request.method(), request.url());
        let response = client.execute(request).unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(kind, "application/json", "{what}");
        if status == 405 {
            assert!(response.headers().contains_key("allow"), "{what}");
        }
        let body: Value = response.json().unwrap();
        let message = body["error"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{what}: {body}");
    }
    let ok: Value = client
        .get(url("/v1/status?limit=1000"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(ok["items"].is_array(), "{ok}");
}
