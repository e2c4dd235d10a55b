//! Several `banhammer serve` processes sharing one Redis (or a Redis Cluster) behave as one:
//! one limit across nodes, bans seen everywhere at once, and an outage answered by each
//! rule's fail policy with recovery when Redis returns. The servers are real processes; Redis
//! is started by the tests (banhammer-testkit).

use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banhammer_testkit::{wait, RedisCluster, RedisServer};
use serde_json::{json, Value};

mod common;

/// A `banhammer serve` process, killed when dropped.
struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node(dir: &Path, name: &str, config: &Path, store: &str) -> Node {
    let db = dir.join(format!("{name}.sqlite"));
    let (child, base) = common::start_serve(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--db".as_ref(),
        db.as_os_str(),
        "--store".as_ref(),
        store.as_ref(),
    ]);
    Node { child, base }
}

const CONFIG: &str = r#"
# Not the 50 ms default: on a loaded machine a call can take longer, and a call over the
# timeout is answered by the fail policy without being counted, which would break "exactly
# the limit passes". An outage here is a killed Redis: refused at once, whatever the timeout.
[serve]
store_timeout_ms = 2000

[metrics.request]
# 51 events reach the limit: 50 pass.
[[metrics.request.thresholds]]
limit = 51
window = 60
actions = ["block_local"]
action_duration = 600

[metrics.strict]
[[metrics.strict.thresholds]]
limit = 1000
window = 60
actions = ["block_local"]
action_duration = 600
on_store_error = "fail_closed"
"#;

fn config(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("scale.toml");
    std::fs::write(&p, CONFIG).unwrap();
    p
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn incr(c: &reqwest::blocking::Client, base: &str, token: &str, metric: &str) -> bool {
    let r = c
        .post(format!("{base}/v1/incr"))
        .json(&json!({"token": token, "metric": metric}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json::<Value>().unwrap()["passed"].as_bool().unwrap()
}

/// The node's Prometheus metrics.
fn metrics(c: &reqwest::blocking::Client, base: &str) -> String {
    c.get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// 3 × 60 requests for one token, concurrently through three nodes: exactly 50 pass.
fn exactly_the_limit_passes(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let nodes: Vec<Node> = (0..3)
        .map(|i| node(dir.path(), &format!("n{i}"), &cfg, store))
        .collect();
    let passed = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for n in &nodes {
            let passed = Arc::clone(&passed);
            s.spawn(move || {
                let c = client();
                for _ in 0..60 {
                    if incr(&c, &n.base, "198.51.100.1", "request") {
                        passed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    assert_eq!(
        passed.load(Ordering::SeqCst),
        50,
        "one limit across all nodes"
    );
    // Rates are not kept on the store unless the configuration asks.
    let r: Value = client()
        .post(format!("{}/v1/incr?rates=true", nodes[0].base))
        .json(&json!({"token": "198.51.100.9", "metric": "request"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(r.get("stats").is_none_or(Value::is_null), "{r}");
    // The ban is answered by every node.
    let c = client();
    for n in &nodes {
        assert!(!incr(&c, &n.base, "198.51.100.1", "request"));
        let ban: Value = c
            .get(format!("{}/v1/bans/198.51.100.1", n.base))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(ban["rule"], "request");
    }
}

#[test]
fn three_nodes_on_one_redis_enforce_one_limit() {
    let redis = RedisServer::start();
    exactly_the_limit_passes(&redis.url());
}

#[test]
fn three_nodes_on_a_redis_cluster_enforce_one_limit() {
    let cluster = RedisCluster::start();
    exactly_the_limit_passes(&cluster.url());
}

#[test]
fn a_ban_made_through_one_node_is_answered_by_the_others_at_their_next_request() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let nodes: Vec<Node> = (0..3)
        .map(|i| node(dir.path(), &format!("n{i}"), &cfg, &redis.url()))
        .collect();
    let c = client();
    let r = c
        .post(format!("{}/v1/now", nodes[0].base))
        .json(&json!({"token": "203.0.113.5", "metric": "request", "threshold": 0}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    // The very next request to every other node is refused (no timing assertion: the ban is
    // in Redis before `now` answers, whatever each node's cache holds).
    for n in &nodes[1..] {
        assert!(
            !incr(&c, &n.base, "203.0.113.5", "request"),
            "{} answers the ban",
            n.base
        );
    }
    // Listed once on every node, with its rule; status is the in-memory engine's only.
    for n in &nodes {
        let bans: Value = c
            .get(format!("{}/v1/bans", n.base))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let text = bans.to_string();
        assert_eq!(text.matches("203.0.113.5").count(), 1, "{text}");
        assert!(text.contains("\"request\""), "{text}");
    }
    let r = c
        .get(format!("{}/v1/status/203.0.113.5/request", nodes[1].base))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 501);
}

#[test]
fn an_outage_is_answered_by_fail_policy_and_recovered_from() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let a = node(dir.path(), "a", &cfg, &redis.url());
    let b = node(dir.path(), "b", &cfg, &redis.url());
    let c = client();
    // A known ban before the outage.
    for _ in 0..51 {
        incr(&c, &a.base, "192.0.2.99", "request");
    }
    assert!(!incr(&c, &b.base, "192.0.2.99", "request"));
    // Load while Redis dies.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, answered, base) = (Arc::clone(&stop), Arc::clone(&answered), a.base.clone());
        std::thread::spawn(move || {
            let c = client();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let ip = format!("10.9.{}.{}", (i >> 8) & 255, i & 255);
                incr(&c, &base, &ip, "request");
                answered.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    wait::until("the first answer to the load", || {
        answered.load(Ordering::Relaxed) > 0
    });
    redis.kill();
    wait::until("node a reporting banhammer_store_up 0", || {
        metrics(&c, &a.base).contains("banhammer_store_up 0")
    });
    for n in [&a, &b] {
        assert!(
            incr(&c, &n.base, "10.0.0.1", "request"),
            "fail_open rules pass during the outage"
        );
        assert!(
            !incr(&c, &n.base, "10.0.0.1", "strict"),
            "fail_closed rules deny during the outage"
        );
        assert!(
            !incr(&c, &n.base, "192.0.2.99", "request"),
            "known bans still hold"
        );
    }
    // The bans a node knows are still listed.
    let bans = c.get(format!("{}/v1/bans", b.base)).send().unwrap();
    assert!(bans.status().is_success(), "{}", bans.status());
    let bans = bans.text().unwrap();
    assert!(bans.contains("192.0.2.99"), "{bans}");
    // The node keeps answering the load (each request within the client's timeout, or the
    // load thread fails).
    let before = answered.load(Ordering::Relaxed);
    wait::until("ten more answers to the load during the outage", || {
        answered.load(Ordering::Relaxed) >= before + 10
    });
    // Redis comes back (empty; `restart` returns once it answers PING): the nodes reconnect by
    // themselves.
    redis.restart();
    for n in [&a, &b] {
        let what = format!(
            "{} recovering (`strict` passes, banhammer_store_up 1)",
            n.base
        );
        wait::until(&what, || {
            incr(&c, &n.base, "10.0.0.2", "strict")
                && metrics(&c, &n.base).contains("banhammer_store_up 1")
        });
    }
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    for _ in 0..51 {
        incr(&c, &b.base, "192.0.2.100", "request");
    }
    assert!(
        !incr(&c, &a.base, "192.0.2.100", "request"),
        "limits are shared again"
    );
}

#[test]
fn actions_run_once_per_decision_on_the_node_that_started_it() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records.jsonl");
    let cfg = dir.path().join("actions.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[serve]
return_rates = true

[actions.record_local]
path = "{}"

[metrics.signup]
[[metrics.signup.thresholds]]
limit = 3
window = 60
actions = ["record_local"]
action_duration = 600
"#,
            records.display()
        ),
    )
    .unwrap();
    let nodes: Vec<Node> = (0..2)
        .map(|i| node(dir.path(), &format!("n{i}"), &cfg, &redis.url()))
        .collect();
    let c = client();
    // Events alternate between the nodes; the 3rd (on node 0) starts the notice, later ones
    // (on both nodes) fall inside it.
    for i in 0..6 {
        assert!(incr(&c, &nodes[i % 2].base, "192.0.2.7", "signup"));
    }
    // Rates asked for in the configuration come from Redis: all six events, whichever node.
    let r: Value = c
        .post(format!("{}/v1/incr", nodes[1].base))
        .json(&json!({"token": "192.0.2.7", "metric": "signup"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["stats"]["token_rate_1m"], 7, "{r}");
    // Each node queues its records and writes them one at a time, in order. A last notice
    // started on each node, for a token of its own, is queued after anything either node may
    // wrongly have queued for 192.0.2.7: once both are written, so is everything before them.
    let last = ["192.0.2.20", "192.0.2.21"];
    for (n, token) in nodes.iter().zip(last) {
        for _ in 0..3 {
            assert!(incr(&c, &n.base, token, "signup"));
        }
    }
    let tokens = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|r| r["token"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    wait::until("both nodes' last records", || {
        let written = tokens(&std::fs::read_to_string(&records).unwrap_or_default());
        last.iter().all(|t| written.iter().any(|w| w == t))
    });
    let text = std::fs::read_to_string(&records).unwrap();
    // The two nodes write apart: in either order.
    let mut written = tokens(&text);
    written.sort_unstable();
    let mut decided = ["192.0.2.7", last[0], last[1]];
    decided.sort_unstable();
    assert_eq!(written, decided, "one record per decision: {text}");
    let record: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["token"] == "192.0.2.7")
        .unwrap();
    assert_eq!(record["limit"], 3);
}

#[test]
fn bans_held_by_a_node_go_back_into_a_redis_that_restarted_empty() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let a = node(dir.path(), "a", &cfg, &redis.url());
    let c = client();
    let r = c
        .post(format!("{}/v1/now", a.base))
        .json(&json!({"token": "203.0.113.9", "metric": "request", "threshold": 0}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    // Redis restarts without persistence: every key is gone.
    redis.restart();
    // A node that starts now knows nothing of the ban; node A, which holds it in its log,
    // puts it back, and the new node then refuses the token too. (Before, it passed forever.)
    let b = node(dir.path(), "b", &cfg, &redis.url());
    banhammer_testkit::wait::until("the ban being put back into the store", || {
        !incr(&c, &b.base, "203.0.113.9", "strict")
    });
    assert!(!incr(&c, &a.base, "203.0.113.9", "strict"));
    assert!(
        incr(&c, &b.base, "203.0.113.10", "strict"),
        "others still pass"
    );
}
