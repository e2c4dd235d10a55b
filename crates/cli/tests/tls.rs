//! `serve` on a Redis that speaks only TLS (`rediss://`, and a cluster over
//! `rediss+cluster://`), through the real binary: with the server's CA it counts and bans there; a CA that did not sign the server's certificate, or
//! plain `redis://` to the TLS port, stops `serve` at start with an error that says so.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use banhammer_testkit::{wait, RedisCluster, RedisServer};
use serde_json::json;

mod common;

const CONFIG: &str = r#"
[metrics.request]
# 6 events reach the limit: 5 pass.
[[metrics.request.thresholds]]
limit = 6
window = 60
actions = ["block_local"]
action_duration = 600
"#;

fn config(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("tls.toml");
    std::fs::write(&p, CONFIG).unwrap();
    p
}

fn incr(c: &reqwest::blocking::Client, base: &str, token: &str) -> bool {
    let r = c
        .post(format!("{base}/v1/incr"))
        .json(&json!({"token": token, "metric": "request"}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json::<serde_json::Value>().unwrap()["passed"]
        .as_bool()
        .unwrap()
}

/// Two `serve` nodes on `store` with `ca`: one limit, counted in Redis.
fn two_nodes_count_and_ban(store: &str, ca: &Path, keys: impl Fn(&str) -> String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let nodes: Vec<_> = ["a", "b"]
        .iter()
        .map(|name| {
            let db = dir.path().join(format!("{name}.sqlite"));
            let (child, base) = common::start_serve(&[
                "--config".as_ref(),
                cfg.as_os_str(),
                "--db".as_ref(),
                db.as_os_str(),
                "--store".as_ref(),
                store.as_ref(),
                "--store-ca".as_ref(),
                ca.as_os_str(),
            ]);
            Killed(child, base)
        })
        .collect();
    let c = reqwest::blocking::Client::new();
    // Counted in Redis, through both nodes: one limit.
    let passed = (0..8)
        .filter(|i| incr(&c, &nodes[i % 2].1, "198.51.100.7"))
        .count();
    assert_eq!(passed, 5, "one limit across both nodes");
    let keys = keys("bh:{198.51.100.7}:*");
    assert!(
        keys.contains(":w:request"),
        "the window is in Redis: {keys}"
    );
    assert!(keys.contains(":ban\n"), "the ban is in Redis: {keys}");
    assert!(!incr(&c, &nodes[0].1, "198.51.100.7"));
    assert!(!incr(&c, &nodes[1].1, "198.51.100.7"));
}

#[test]
fn serve_counts_and_bans_on_a_redis_over_tls_with_its_ca() {
    let redis = RedisServer::start_tls();
    assert!(redis.url().starts_with("rediss://"));
    two_nodes_count_and_ban(&redis.url(), redis.ca().unwrap(), |pattern| {
        redis.cli(&["KEYS", pattern])
    });
}

#[test]
fn serve_counts_and_bans_on_a_redis_cluster_over_tls() {
    let cluster = RedisCluster::start_tls();
    assert!(cluster.url().starts_with("rediss+cluster://"));
    // The token's keys share one hash slot: on one of the masters.
    two_nodes_count_and_ban(&cluster.url(), cluster.ca().unwrap(), |pattern| {
        cluster
            .nodes
            .iter()
            .map(|n| n.cli(&["KEYS", pattern]))
            .collect()
    });
}

/// A `serve` child, killed when dropped.
struct Killed(std::process::Child, String);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `serve` on `store` (with `ca`, if any), which must fail at start: returns its
/// stderr. Bounded: a `serve` that hangs instead fails the test.
fn serve_fails(store: &str, ca: Option<&Path>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_banhammer"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--db")
        .arg(dir.path().join("d.sqlite"))
        .args(["--store", store]);
    if let Some(ca) = ca {
        cmd.arg("--store-ca").arg(ca);
    }
    let mut child = Killed(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        String::new(),
    );
    let status = wait::for_some("serve giving up on the store", || {
        child.0.try_wait().unwrap()
    });
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

#[test]
fn a_certificate_not_signed_by_the_configured_ca_is_refused() {
    let redis = RedisServer::start_tls();
    // Another server's CA: a valid CA, but not the one that signed this server.
    let other = RedisServer::start_tls();
    let stderr = serve_fails(&redis.url(), other.ca());
    assert!(
        stderr.contains("connecting to the shared store")
            && stderr.contains("invalid peer certificate: UnknownIssuer")
            && stderr.contains("serve.store_ca"),
        "{stderr}"
    );
}

#[test]
fn plain_redis_to_a_tls_port_is_refused() {
    let redis = RedisServer::start_tls();
    let url = redis.url().replace("rediss://", "redis://");
    let stderr = serve_fails(&url, None);
    assert!(
        stderr.contains("connecting to the shared store"),
        "{stderr}"
    );
    assert!(stderr.contains("rediss://"), "names the way out: {stderr}");
}

#[test]
fn a_ca_file_without_a_certificate_is_an_error_naming_the_field() {
    let redis = RedisServer::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let stderr = serve_fails(&redis.url(), Some(&empty));
    assert!(
        stderr.contains("serve.store_ca") && stderr.contains("holds no PEM certificate"),
        "{stderr}"
    );
}
