//! The real `banhammer serve` against faults a real machine has: a disk that fills up (a small
//! tmpfs the test mounts; CI runs as root) and a process killed with SIGKILL.
//!
//! Contents: a decision the full disk refused is answered by the rule's fail policy, not
//! reported as made, and stored once space is back, so it survives SIGKILL · counts survive
//! SIGKILL (saved every 2 s) and SIGTERM (saved at the stop).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use banhammer_testkit::wait;
use serde_json::{json, Value};

mod common;

/// A tmpfs of `size` mounted on a fresh folder, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs the tests as root)"
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk refuses; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        // Bounded: a 2 MB disk takes at most 128 chunks.
        for _ in 0..10_000 {
            if f.write_all(&chunk).and_then(|()| f.sync_all()).is_err() {
                return path;
            }
        }
        panic!("the tmpfs never filled up");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

const CONFIG: &str = r#"
[metrics.login_failed]
[[metrics.login_failed.thresholds]]
limit = 3
window = 600
actions = ["block_local"]
action_duration = 3600
on_store_error = "fail_closed"

[metrics.signup]
[[metrics.signup.thresholds]]
limit = 3
window = 600
actions = ["block_local"]
action_duration = 3600
"#;

fn incr(c: &reqwest::blocking::Client, base: &str, token: &str, metric: &str) -> (u16, Value) {
    let r = c
        .post(format!("{base}/v1/incr"))
        .json(&json!({"token": token, "metric": metric}))
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

/// The active bans `banhammer bans --db` lists (the store read by another process).
fn stored_bans(db: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_banhammer"))
        .args(["bans", "--db"])
        .arg(db)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_decision_the_full_disk_refused_is_not_reported_and_is_stored_once_space_is_back() {
    let disk = Tmpfs::mount("2m");
    let db = disk.path().join("decisions.sqlite");
    let config = disk.path().join("banhammer.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let (mut server, base) = common::start_serve(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--db".as_ref(),
        db.as_os_str(),
    ]);
    let c = reqwest::blocking::Client::new();
    let filler = disk.fill();
    for _ in 0..2 {
        assert_eq!(incr(&c, &base, "203.0.113.7", "login_failed").0, 200);
        assert_eq!(incr(&c, &base, "198.51.100.7", "signup").0, 200);
    }
    // The third reaches the limit; the ban cannot be stored. It is answered (200, not 503)
    // by each rule's fail policy: login_failed fails closed, signup open.
    let (status, body) = incr(&c, &base, "203.0.113.7", "login_failed");
    assert_eq!((status, &body), (200, &json!({"passed": false})));
    let (status, body) = incr(&c, &base, "198.51.100.7", "signup");
    assert_eq!((status, &body), (200, &json!({"passed": true})));
    // While the ban is not on disk, the fail policy keeps answering for it.
    assert_eq!(
        incr(&c, &base, "198.51.100.7", "signup").1,
        json!({"passed": true})
    );
    assert!(!stored_bans(&db).contains("203.0.113.7"));
    // Visibly: /healthz says degraded, /metrics counts what waits.
    let health: Value = c
        .get(format!("{base}/healthz"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("banhammer_decisions_pending ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    // Space comes back: the waiting decisions are stored (the writer retries every second).
    std::fs::remove_file(filler).unwrap();
    wait::until("the refused bans being stored", || {
        let listed = stored_bans(&db);
        listed.contains("203.0.113.7") && listed.contains("198.51.100.7")
    });
    assert_eq!(
        incr(&c, &base, "198.51.100.7", "signup").1,
        json!({"passed": false})
    );
    let health: Value = c
        .get(format!("{base}/healthz"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health, json!({"status": "ok"}));
    // And they survive SIGKILL.
    server.kill().unwrap();
    server.wait().unwrap();
    let (mut server, base) = common::start_serve(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--db".as_ref(),
        db.as_os_str(),
    ]);
    for (token, metric) in [("203.0.113.7", "login_failed"), ("198.51.100.7", "signup")] {
        assert_eq!(
            incr(&c, &base, token, metric).1,
            json!({"passed": false}),
            "{token} is still banned after the restart"
        );
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

/// Whether the windows saved in `db` hold `token`'s counts (read by another connection).
fn saved_counts_of(db: &Path, token: &str) -> bool {
    banhammer_store_sqlite::DecisionStore::open(db)
        .and_then(|s| s.load_windows(banhammer_core::Timestamp::MIN))
        .is_ok_and(|w| w.iter().any(|w| w.token.as_str() == token))
}

fn serve(config: &Path, db: &Path) -> (std::process::Child, String) {
    common::start_serve(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--db".as_ref(),
        db.as_os_str(),
    ])
}

#[test]
fn counts_survive_sigkill_and_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("decisions.sqlite");
    let config = dir.path().join("banhammer.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let c = reqwest::blocking::Client::new();
    // Two failures, then the process is killed: before, every restart started from zero
    // (9 failures in 600 s against a limit of 3, never banned).
    let (mut server, base) = serve(&config, &db);
    for _ in 0..2 {
        assert_eq!(
            incr(&c, &base, "203.0.113.7", "login_failed").1,
            json!({"passed": true})
        );
    }
    wait::until("the counts being saved", || {
        saved_counts_of(&db, "203.0.113.7")
    });
    server.kill().unwrap();
    server.wait().unwrap();
    let (mut server, base) = serve(&config, &db);
    assert_eq!(
        incr(&c, &base, "203.0.113.7", "login_failed").1,
        json!({"passed": false}),
        "the third failure in 600 s is refused, whatever happened in between"
    );
    // A clean stop saves what changed since the last save, without waiting for it.
    for _ in 0..2 {
        incr(&c, &base, "198.51.100.7", "signup");
    }
    let term = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(server.wait().unwrap().success());
    let (mut server, base) = serve(&config, &db);
    assert_eq!(
        incr(&c, &base, "198.51.100.7", "signup").1,
        json!({"passed": false})
    );
    server.kill().unwrap();
    server.wait().unwrap();
}

const ESCALATING: &str = r#"
[serve]
admin_token = "t0ken"

[metrics.login_failed]
[[metrics.login_failed.thresholds]]
limit = 3
window = 600
actions = ["block_local"]
action_duration = 100
escalate = { factor = 3, max = 10000, memory = "1d" }
"#;

/// `token`'s active ban as `(from, until)`, through the admin API.
fn ban_span(c: &reqwest::blocking::Client, base: &str, token: &str) -> (i64, i64) {
    let v: Value = c
        .get(format!("{base}/v1/bans/{token}"))
        .bearer_auth("t0ken")
        .send()
        .unwrap()
        .json()
        .unwrap();
    (v["from"].as_i64().unwrap(), v["until"].as_i64().unwrap())
}

#[test]
fn a_repeat_offender_keeps_its_offence_count_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("decisions.sqlite");
    let config = dir.path().join("banhammer.toml");
    std::fs::write(&config, ESCALATING).unwrap();
    let c = reqwest::blocking::Client::new();
    let fire = |base: &str| {
        let r = c
            .post(format!("{base}/v1/now"))
            .bearer_auth("t0ken")
            .json(&json!({"token": "203.0.113.7", "metric": "login_failed", "threshold": 0}))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    };
    let (mut server, base) = serve(&config, &db);
    fire(&base);
    let (from, until) = ban_span(&c, &base, "203.0.113.7");
    assert_eq!(until - from, 100, "a first ban lasts action_duration");
    let r = c
        .delete(format!("{base}/v1/bans/203.0.113.7"))
        .bearer_auth("t0ken")
        .send()
        .unwrap();
    assert!(r.status().is_success());
    // Offences count by the second (a ban started in the same second is not an earlier one):
    // wait for the server's clock, as its Date header tells it, to pass the ban's second.
    let date = |r: reqwest::blocking::Response| r.headers()["date"].to_str().unwrap().to_owned();
    let banned_at = date(c.get(format!("{base}/healthz")).send().unwrap());
    wait::until("a later second", || {
        date(c.get(format!("{base}/healthz")).send().unwrap()) != banned_at
    });
    server.kill().unwrap();
    server.wait().unwrap();
    // After a crash, the second ban within a day lasts 3 × 100 s: the offence was kept.
    let (mut server, base) = serve(&config, &db);
    fire(&base);
    let (from, until) = ban_span(&c, &base, "203.0.113.7");
    assert_eq!(
        until - from,
        300,
        "the second ban within memory is escalated"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
