//! One suite of event scripts, `banhammer eval` in memory against `banhammer eval
//! --scratch-store` on a real Redis server and on a real 3-master Redis Cluster: the output
//! must be the same, byte for byte, in CSV and in JSON lines (rule, tier, value, from, until).

use std::path::{Path, PathBuf};
use std::process::Command;

use banhammer_testkit::{RedisCluster, RedisServer};

/// `(config, script)` pairs: `tests/conformance/NAME.{toml,events}` and the README's example.
fn suite() -> Vec<(PathBuf, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut pairs: Vec<(PathBuf, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "events"))
        .map(|events| (events.with_extension("toml"), events))
        .collect();
    pairs.sort();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    pairs.push((
        examples.join("banhammer.toml"),
        examples.join("logins.events"),
    ));
    assert!(pairs.len() >= 6, "{pairs:?}");
    pairs
}

fn eval(config: &Path, events: &Path, format: &str, store: Option<&str>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_banhammer"));
    cmd.args(["eval", "--format", format, "--config"])
        .arg(config)
        .arg(events);
    if let Some(url) = store {
        cmd.args(["--scratch-store", url]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{} {store:?}: {}",
        events.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn conform(url: &str) {
    for (config, events) in suite() {
        for format in ["csv", "jsonl"] {
            let memory = eval(&config, &events, format, None);
            assert!(
                memory.lines().count() >= 2,
                "{}: a case with decisions",
                events.display()
            );
            let store = eval(&config, &events, format, Some(url));
            assert_eq!(memory, store, "{} ({format}) on {url}", events.display());
        }
    }
}

#[test]
fn the_suite_decides_alike_in_memory_and_on_one_redis_server() {
    let server = RedisServer::start();
    conform(&server.url());
}

#[test]
fn the_suite_decides_alike_in_memory_and_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    conform(&cluster.url());
}

#[test]
fn an_unreachable_scratch_store_is_a_clear_error() {
    let (config, events) = suite().pop().unwrap();
    let port = banhammer_testkit::free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_banhammer"))
        .args(["eval", "--config"])
        .arg(&config)
        .arg(&events)
        .args(["--scratch-store", &format!("redis://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "the run could not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("redis unavailable"), "{stderr}");
}
