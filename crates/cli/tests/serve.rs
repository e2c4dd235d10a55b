//! Drives the real `banhammer serve` process: a ban survives SIGKILL under load, SIGTERM stops
//! cleanly, `banhammer bans` reads the store, and admin routes are never open to the network
//! by accident (an address other than loopback needs a token or `--insecure-open-admin`; an
//! empty token is an error).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

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

    let listed = bin()
        .args(["bans", "--format", "json", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let bans = listed["bans"].as_array().unwrap();
    assert!(
        bans.iter()
            .any(|b| b["token"] == "192.0.2.66" && b["until"].as_i64() == Some(until)),
        "{listed}"
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
            .any(|l| l.contains(" 192.0.2.5 ") && l.contains(" BAN ")),
        "{text}"
    );
}

/// `banhammer serve ARGS` with no token in the environment and logs at info, its output piped.
fn serve_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.arg("serve")
        .args(args)
        .arg("--db")
        .arg(dir.join("decisions.sqlite"))
        .env_remove("BANHAMMER_ADMIN_TOKEN")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits at most `limit` for `child` to exit; kills it if it has not.
fn exit_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let step = Duration::from_millis(20);
    for _ in 0..limit.as_millis() / step.as_millis() {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(step);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The lines `read` yields, sent over a channel, so that waiting on them can be bounded.
fn lines(read: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(read).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line from `rx` that contains `needle`, waiting at most 20 s in all.
fn line_with(rx: &mpsc::Receiver<String>, needle: &str) -> Option<String> {
    let deadline = Duration::from_secs(20);
    let step = Duration::from_millis(100);
    for _ in 0..deadline.as_millis() / step.as_millis() {
        match rx.recv_timeout(step) {
            Ok(line) if line.contains(needle) => return Some(line),
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    }
    None
}

#[test]
fn open_admin_routes_on_a_reachable_address_are_refused_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve_cmd(dir.path(), &["--listen", "0.0.0.0:0"])
        .spawn()
        .unwrap();
    let status = exit_within(&mut child, Duration::from_secs(20))
        .expect("serve refuses to start instead of serving");
    assert_eq!(status.code(), Some(2));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    for needle in [
        "admin_token",
        "BANHAMMER_ADMIN_TOKEN",
        "--insecure-open-admin",
        "0.0.0.0",
    ] {
        assert!(err.contains(needle), "the refusal names {needle}: {err}");
    }

    // Asked for: it starts, and says in its log that admin routes are open.
    let mut child = serve_cmd(
        dir.path(),
        &["--listen", "0.0.0.0:0", "--insecure-open-admin"],
    )
    .spawn()
    .unwrap();
    let out = lines(child.stdout.take().unwrap());
    let log = lines(child.stderr.take().unwrap());
    let listening = line_with(&out, "listening on http://0.0.0.0:");
    let warned = line_with(&log, "Admin routes are OPEN to the network");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        listening.is_some(),
        "serve starts with --insecure-open-admin"
    );
    assert!(warned.is_some(), "and its log says admin routes are open");

    // With a token it starts too, and its log says admin routes are protected.
    let mut child = serve_cmd(dir.path(), &["--listen", "0.0.0.0:0"])
        .env("BANHAMMER_ADMIN_TOKEN", "s3cret")
        .spawn()
        .unwrap();
    let log = lines(child.stderr.take().unwrap());
    let said = line_with(&log, "Admin routes are protected by the bearer token");
    let _ = child.kill();
    let _ = child.wait();
    assert!(said.is_some(), "the log says admin routes are protected");
}

#[test]
fn an_empty_admin_token_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        "[serve]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"\"\n",
    )
    .unwrap();
    let checked = bin().arg("check").arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}:3:15: serve.admin_token:", config.display())),
        "{err}"
    );
    let mut child = serve_cmd(dir.path(), &["--config", config.to_str().unwrap()])
        .spawn()
        .unwrap();
    let status =
        exit_within(&mut child, Duration::from_secs(20)).expect("serve refuses the configuration");
    assert_eq!(status.code(), Some(2));
}
