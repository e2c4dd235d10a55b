//! Tokens and other untrusted text carrying control characters (an OSC escape, a bell, a
//! newline and a forged log line) through the real binary: records stay one per line, tables
//! and logs show the characters escaped.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;

/// A terminal title escape, a bell, and a newline starting a forged log line.
const FORGED: &str =
    "\u{1b}]0;pwned\u{7}\n2019-02-07T21:11:00Z  INFO banhammer: UNBAN. token=1.2.3.4";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_banhammer"))
}

/// A character that must not reach a record, a table or a log as it is.
fn unsafe_char(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Whether `text` is lines with no control character but their ends.
fn printable_lines(text: &str) -> bool {
    text.lines().all(|l| !l.chars().any(unsafe_char))
}

/// One metric `req` whose first event bans its token for 100 s.
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("ban.toml");
    std::fs::write(
        &path,
        "[metrics.req]\n[[metrics.req.thresholds]]\nlimit = 1\nwindow = 60\n\
         actions = [\"block_local\"]\naction_duration = 100\n",
    )
    .unwrap();
    path
}

fn eval(dir: &Path, script: &str, format: &str) -> String {
    let events = dir.join("events");
    std::fs::write(&events, script).unwrap();
    let out = bin()
        .args(["eval", "--format", format, "--config"])
        .arg(config(dir))
        .arg(&events)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn eval_csv_keeps_one_record_per_line_with_controls_escaped() {
    let dir = tempfile::tempdir().unwrap();
    // Event scripts split on spaces and line ends: every other control can be in a token.
    let token = "a\u{1b}]0;x\u{7}b\u{b}c\u{7f}d\u{85}e\u{9b}f\u{2028}g,\"h\"";
    let csv = eval(dir.path(), &format!("100 {token} req\n"), "csv");
    assert!(printable_lines(&csv), "{csv:?}");
    let records: Vec<&str> = csv.lines().collect();
    assert_eq!(records.len(), 2, "a BAN and its UNBAN: {csv:?}");
    assert_eq!(
        records[0],
        "100,BAN,\"a\\u{1b}]0;x\\u{7}b\\u{b}c\\u{7f}d\\u{85}e\\u{9b}f\\u{2028}g,\"\"h\"\"\""
    );
    assert!(records[1].starts_with("200,UNBAN,\"a\\u{1b}"), "{csv:?}");

    // JSON lines keep the exact token, with no raw control in the line either.
    let jsonl = eval(dir.path(), &format!("100 {token} req\n"), "jsonl");
    assert!(printable_lines(&jsonl), "{jsonl:?}");
    let first: Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert_eq!(first["token"], token);
}

#[test]
fn bans_lists_a_token_with_a_forged_line_on_one_row_with_no_raw_escape() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("decisions.sqlite");
    let config = config(dir.path());
    let (child, base) = common::start_serve(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--db".as_ref(),
        db.as_os_str(),
    ]);
    let answer: Value = reqwest::blocking::Client::new()
        .post(format!("{base}/v1/incr"))
        .json(&serde_json::json!({"token": FORGED, "metric": "req"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(answer["passed"], false, "{answer}");
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(child.wait_with_output().unwrap().status.success());
    for all in [false, true] {
        let mut cmd = bin();
        cmd.args(["bans", "--db"]).arg(&db);
        if all {
            cmd.arg("--all");
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(printable_lines(&text), "{text:?}");
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 2, "the header and one row: {text}");
        let escaped = "\\u{1b}]0;pwned\\u{7}\\u{a}2019-02-07T21:11:00Z  INFO";
        if all {
            // AT, VERB, TOKEN, …
            assert!(rows[1].contains(&format!(" BAN   {escaped}")), "{text}");
        } else {
            // TOKEN, ORIGIN, …
            assert!(rows[1].starts_with(escaped), "{text}");
            assert!(rows[1].contains(" rule "), "{text}");
        }
    }
}

#[test]
fn the_service_log_shows_a_forged_token_on_its_own_line_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("decisions.sqlite");
    let config = config(dir.path());
    let mut child = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_owned();
    let answer: Value = reqwest::blocking::Client::new()
        .post(format!("{base}/v1/incr"))
        .json(&serde_json::json!({"token": FORGED, "metric": "req"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(answer["passed"], false, "{answer}");
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let log = String::from_utf8(child.wait_with_output().unwrap().stderr).unwrap();
    // The BAN's log line carries the token escaped; no line of the log is the forged one.
    assert!(
        log.lines()
            .any(|l| l.contains("BAN.") && l.contains("\\u{1b}]0;pwned\\u{7}\\u{a}2019-02-07")),
        "{log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("2019-02-07T21:11:00Z")),
        "a forged line: {log}"
    );
    assert!(!log.contains('\u{7}'), "a raw bell: {log:?}");
}
