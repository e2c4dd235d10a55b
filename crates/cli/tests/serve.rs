//! Drives the real `banhammer serve` process: a ban survives SIGKILL under load, SIGTERM stops
//! cleanly, and `banhammer bans` reads the store.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;

mod common;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_banhammer"))
}

/// Starts `banhammer serve` on a free port with `db`; returns the child and its base URL.
fn serve(db: &Path) -> (Child, String) {
    common::start_serve(&["--db".as_ref(), db.as_os_str()])
}

fn detect(client: &reqwest::blocking::Client, base: &str, ip: &str) -> bool {
    let r = client
        .put(format!("{base}/detect"))
        .form(&[
            ("email", "victim@example.com"),
            ("event_name", "login"),
            ("ip", ip),
        ])
        .send()
        .unwrap();
    r.json::<Value>().unwrap()["detected_attack"]
        .as_bool()
        .unwrap()
}

#[test]
fn a_reported_ban_survives_sigkill_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("decisions.sqlite");
    let (mut child, base) = serve(&db);
    let client = reqwest::blocking::Client::new();
    // Background load from many addresses while the ban is made and the server killed.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, base) = (Arc::clone(&stop), base.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
                if client
                    .put(format!("{base}/detect"))
                    .form(&[
                        ("email", "x@example.com"),
                        ("event_name", "login"),
                        ("ip", ip.as_str()),
                    ])
                    .send()
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let attacked: Vec<bool> = (0..11)
        .map(|_| detect(&client, &base, "192.0.2.66"))
        .collect();
    assert_eq!(
        attacked.iter().filter(|a| **a).count(),
        1,
        "the 11th request is detected"
    );
    let ban: Value = client
        .get(format!("{base}/v1/bans/192.0.2.66"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let until = ban["until"].as_i64().unwrap();
    child.kill().unwrap(); // SIGKILL: no chance to flush anything
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();

    let (mut child, base) = serve(&db);
    let ban: Value = client
        .get(format!("{base}/v1/bans/192.0.2.66"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        ban["until"].as_i64(),
        Some(until),
        "restored with the same end"
    );
    assert!(
        detect(&client, &base, "192.0.2.66"),
        "still answered as an attack"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let listed = bin().args(["bans", "--db"]).arg(&db).output().unwrap();
    let text = String::from_utf8(listed.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("192.0.2.66 ") && l.contains(&until.to_string())),
        "{text}"
    );
}

#[test]
fn sigterm_answers_what_is_in_flight_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("decisions.sqlite");
    let (child, base) = serve(&db);
    let client = reqwest::blocking::Client::new();
    for _ in 0..11 {
        detect(&client, &base, "192.0.2.5");
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    let listed = bin()
        .args(["bans", "--db"])
        .arg(&db)
        .arg("--all")
        .output()
        .unwrap();
    let text = String::from_utf8(listed.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("192.0.2.5 ") && l.contains("BAN")),
        "{text}"
    );
}
