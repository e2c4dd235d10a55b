//! Drives the real `banhammer` binary on real files.
//!
//! Contents: `eval` (docs/semantics.md's worked examples, both formats, stdin, malformed lines,
//! actions writing files, the shipped example) · `check` (valid, every error located).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use banhammer_testkit::script::event_lines;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_banhammer"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn eval(config: &str, script: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "c.toml", config);
    let s = write(dir.path(), "events", script);
    let mut cmd = bin();
    cmd.arg("eval").arg("--config").arg(&c).args(extra).arg(&s);
    finish(cmd.output().unwrap())
}

/// docs/semantics.md's example threshold: limit 3, window 10 s, 100 s.
fn example(policy: &str) -> String {
    format!(
        "[metrics.m]\n[[metrics.m.thresholds]]\nlimit = 3\nwindow = 10\n\
         actions = [\"block_local\"]\naction_duration = 100\npolicy = \"{policy}\"\n"
    )
}

#[test]
fn eval_reproduces_the_design_examples() {
    let cases = [
        (
            "after_trigger",
            "0 a, 1 a, 2 a, 50 a",
            "2,BAN,a\n102,UNBAN,a\n",
        ),
        (
            "after_trigger",
            "0 a, 1 a, 2 a, 5 a",
            "2,BAN,a\n105,UNBAN,a\n",
        ),
        (
            "after_trigger",
            "0 a, 1 a, 2 a, 102 a, 103 a, 104 a, 300 b",
            "2,BAN,a\n102,UNBAN,a\n104,BAN,a\n204,UNBAN,a\n",
        ),
        ("after_violation", "0 a, 1 a, 2 a", "2,BAN,a\n102,UNBAN,a\n"),
        (
            "after_violation",
            "0 a, 1 a, 2 a, 20 b",
            "2,BAN,a\n109,UNBAN,a\n",
        ),
        (
            "after_violation",
            "0 a, 1 a, 2 a, 5 a, 200 b",
            "2,BAN,a\n110,UNBAN,a\n",
        ),
    ];
    for (policy, events, expected) in cases {
        let r = eval(&example(policy), &event_lines(events), &[]);
        assert_eq!(r.code, 0, "{policy} {events}: {}", r.stderr);
        assert_eq!(r.stdout, expected, "{policy} {events}");
    }
}

#[test]
fn eval_jsonl_adds_rule_tier_value_and_until() {
    let r = eval(
        &example("after_trigger"),
        &event_lines("0 a, 1 a, 2 a, 5 a"),
        &["--format", "jsonl"],
    );
    assert_eq!(r.code, 0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0],
        r#"{"at":2,"decision":"BAN","token":"a","rule":"m","tier":0,"value":3,"from":2,"until":102}"#
    );
    assert_eq!(
        lines[1],
        r#"{"at":105,"decision":"UNBAN","token":"a","rule":"m","tier":0,"value":4,"from":2,"until":105}"#
    );
}

#[test]
fn eval_reads_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "c.toml", &example("after_trigger"));
    let mut child = bin()
        .args(["eval", "--config"])
        .arg(&c)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(event_lines("0 a, 1 a, 2 a").as_bytes())
        .unwrap();
    let r = finish(child.wait_with_output().unwrap());
    assert_eq!(r.stdout, "2,BAN,a\n102,UNBAN,a\n");
}

#[test]
fn eval_reports_malformed_lines_with_their_place_and_keeps_going() {
    let text = "# a comment\n\n0 a m\nnot-a-time a m\n1 a m\n1 a\n2 a nope\n2 a m\n3 a m x\n";
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "c.toml", &example("after_trigger"));
    let s = write(dir.path(), "events", text);
    let r = finish(
        bin()
            .arg("eval")
            .arg("--config")
            .arg(&c)
            .arg(&s)
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1, "malformed lines make the exit code 1");
    assert_eq!(
        r.stdout, "2,BAN,a\n102,UNBAN,a\n",
        "good lines are all counted"
    );
    let origin = s.display().to_string();
    let errs: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        errs[0],
        format!("{origin}:4: `not-a-time` is not a time in whole unix seconds")
    );
    assert_eq!(errs[1], format!("{origin}:6: missing metric"));
    assert_eq!(errs[2], format!("{origin}:7: unknown metric `nope`"));
    assert_eq!(errs[3], format!("{origin}:9: `x` is not attr=value"));
    assert_eq!(errs[4], format!("{origin}: 4 malformed line(s) skipped"));
}

#[test]
fn eval_survives_binary_garbage_and_huge_lines() {
    let mut bytes = b"0 a m\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 200_000));
    bytes.extend(b"\n\xff\xfe\xfd\n1 a m\n2 a m\n");
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "c.toml", &example("after_trigger"));
    let s = dir.path().join("events");
    std::fs::write(&s, bytes).unwrap();
    let r = finish(
        bin()
            .arg("eval")
            .arg("--config")
            .arg(&c)
            .arg(&s)
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "2,BAN,a\n102,UNBAN,a\n");
    assert!(
        r.stderr.contains(":2: line longer than 65536 bytes"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(":3: not UTF-8"), "{}", r.stderr);
}

#[test]
fn eval_credential_stuffing_with_distinct_emails() {
    let config = "[metrics.detect]\n\
        [[metrics.detect.thresholds]]\nlimit = 11\nwindow = 5\nactions = [\"block_local\"]\naction_duration = 30\n\
        [[metrics.detect.thresholds]]\nlimit = 3\nwindow = 5\nkind = \"distinct(email)\"\n\
        actions = [\"block_local\"]\naction_duration = 30\n";
    let events = "0 1.1.1.1 detect email=a\n1 1.1.1.1 detect email=b\n2 1.1.1.1 detect email=a\n\
                  3 1.1.1.1 detect email=c\n3 2.2.2.2 detect\n";
    let r = eval(config, events, &["--format", "jsonl"]);
    assert_eq!(r.code, 1, "the event without email is malformed");
    assert!(
        r.stderr
            .contains(":5: metric `detect` needs attribute `email`"),
        "{}",
        r.stderr
    );
    let first: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["decision"], "BAN");
    assert_eq!(first["tier"], 1, "the distinct-email tier");
    assert_eq!(first["at"], 3);
}

#[test]
fn eval_runs_actions_that_write_files() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let config = format!(
        "[actions.record_local]\npath = \"{}\"\n\
         [metrics.login_successful]\n[[metrics.login_successful.thresholds]]\n\
         limit = 2\nwindow = 60\nactions = [\"record_local\"]\naction_duration = 3600\n",
        record.display()
    );
    let r = eval(
        &config,
        "0 u login_successful\n1 u login_successful\n2 u login_successful\n",
        &[],
    );
    assert_eq!(
        r.stdout, "1,NOTIFY,u\n3602,NOTIFY_END,u\n",
        "the third event extends it"
    );
    let written = std::fs::read_to_string(&record).unwrap();
    assert_eq!(
        written.lines().count(),
        1,
        "called once per decision: {written}"
    );
    assert!(written.contains(r#""token":"u""#));
    assert!(written.contains(r#""duration":3600"#));
}

#[test]
fn eval_runs_the_shipped_example() {
    let out = bin()
        .current_dir(repo())
        .args([
            "eval",
            "--config",
            "examples/banhammer.toml",
            "examples/logins.events",
        ])
        .output()
        .unwrap();
    let r = finish(out);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    // The 10th failure (every 30 s from t0) bans; the late failure extends the ban by an hour.
    assert_eq!(lines[0], "1700000270,BAN,203.0.113.7");
    assert_eq!(lines[1], "1700000445,NOTIFY,192.0.2.50");
    assert_eq!(lines.last().unwrap(), &"1700006600,UNBAN,203.0.113.7");
}

#[test]
fn check_accepts_the_example_and_locates_every_error() {
    let r = finish(
        bin()
            .current_dir(repo())
            .args(["check", "examples/banhammer.toml"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "examples/banhammer.toml: ok (2 metrics, 3 thresholds)\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.toml",
        "[engine]\nrate = true\n[metrics.m]\n[[metrics.m.thresholds]]\nlimit = -1\nwindow = \"soon\"\naction_duration = 1\n",
    );
    let r = finish(bin().arg("check").arg(&bad).output().unwrap());
    assert_eq!(r.code, 1);
    let origin = bad.display().to_string();
    let errs: Vec<&str> = r.stderr.lines().collect();
    assert!(
        errs[0].starts_with(&format!("{origin}:2:1: engine.rate: unknown field `rate`")),
        "{}",
        r.stderr
    );
    assert!(
        errs[1].starts_with(&format!("{origin}:5:9: metrics.m.thresholds[0].limit:")),
        "{}",
        r.stderr
    );
    assert!(
        errs[2].starts_with(&format!(
            "{origin}:6:10: metrics.m.thresholds[0].window: `soon` is not a duration"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(errs.last().unwrap(), &format!("{origin}: 3 problem(s)"));
}

#[test]
fn a_missing_config_is_a_clear_error() {
    let r = finish(
        bin()
            .args(["eval", "--config", "/nonexistent.toml"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("/nonexistent.toml: cannot read"),
        "{}",
        r.stderr
    );
}

/// Hardening: `check` refuses what the engine or a store would refuse at run time.
#[test]
fn check_refuses_spans_and_families_that_would_fail_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    // A window near i64::MAX made every Redis call fail; ten years is the most accepted.
    let config = write(
        dir.path(),
        "span.toml",
        "[metrics.m]\n[[metrics.m.thresholds]]\nlimit = 3\nwindow = 9223372036854775000\n\
         actions = [\"block_local\"]\naction_duration = 60\n",
    );
    let out = bin().arg("check").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("span.toml:2:1: metrics.m.thresholds[0]: metric `m` tier 0: window must be at most 315360000 seconds"),
        "{stderr}"
    );
    // Seventeen members of one family that a line counts as: replay stopped at line 1.
    let mut text = String::from(
        "[metrics.\"f:*\"]\n[[metrics.\"f:*\".thresholds]]\nlimit = 100\nwindow = 60\n\
         actions = [\"block_local\"]\naction_duration = 60\n",
    );
    for i in 1..=17 {
        text.push_str(&format!(
            "[[accesslog.match]]\npath_prefix = \"/\"\nmetric = \"f:{i}\"\n"
        ));
    }
    let config = write(dir.path(), "family.toml", &text);
    let out = bin().arg("check").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("accesslog.match[16].metric: `f:17` is the 17th member of family `f:*`"),
        "{stderr}"
    );
    // Sixteen are fine, and replay counts every line.
    let text = text.replace(
        "[[accesslog.match]]\npath_prefix = \"/\"\nmetric = \"f:17\"\n",
        "",
    );
    let config = write(dir.path(), "family16.toml", &text);
    assert!(bin().arg("check").arg(&config).status().unwrap().success());
    let log = write(
        dir.path(),
        "a.log",
        "1.2.3.4 - - [31/Dec/2018:23:55:00 +0800] \"GET / HTTP/1.1\" 200 1\n",
    );
    let out = bin()
        .args(["replay", "--config"])
        .arg(&config)
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
