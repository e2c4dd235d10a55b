//! Operator control through the real binary (issue 14), as a fail2ban or CrowdSec operator
//! works: `banhammer ban TOKEN --for 1h --reason …`, `unban`, `bans` against a running `serve`
//! (its admin API: refused without the token) and against a running `watch` (through its
//! state file: the watcher applies the command and its sinks, records and commands, see the
//! ban and the unban); a ban by hand survives a restart of either, counts as an offence for
//! an escalating tier, and a client of the allow list is never counted nor banned. `serve`
//! counts IPv6 clients by their /64 (`/detect`: twelve addresses of one /64 are one client),
//! or each address with `ipv6_prefix = 128`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use banhammer_core::{Clock, SystemClock};
use banhammer_testkit::wait;
use serde_json::{json, Value};

mod common;
mod logs;

use logs::{bin, text, wait_for_lines, Watch};

const TOKEN: &str = "s3cret";

const SERVE_CONFIG: &str = r#"
[serve]
admin_token = "s3cret"
allow = ["192.0.2.0/24"]

[metrics.login_failed]
[[metrics.login_failed.thresholds]]
limit = 3
window = 600
actions = ["block_local"]
action_duration = 100
escalate = { factor = 3, max = "1d", memory = "1d" }
"#;

fn serve(config: &Path, db: &Path) -> (Child, String) {
    common::start_serve(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--db".as_ref(),
        db.as_os_str(),
    ])
}

/// `banhammer ARGS`, with the admin token in the environment when `token` is given.
fn run(args: &[&str], token: Option<&str>) -> Output {
    let mut cmd = bin();
    cmd.args(args).env_remove("BANHAMMER_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("BANHAMMER_ADMIN_TOKEN", t);
    }
    cmd.output().unwrap()
}

fn stdout_of(out: &Output) -> String {
    text(&out.stdout)
}

fn incr(base: &str, token: &str) -> Value {
    reqwest::blocking::Client::new()
        .post(format!("{base}/v1/incr"))
        .json(&json!({"token": token, "metric": "login_failed"}))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// The active bans of a running serve, as `banhammer bans --format json` prints them.
fn listed(base: &str) -> Vec<Value> {
    let out = run(&["bans", "--format", "json", "--server", base], Some(TOKEN));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["bans"].as_array().unwrap().clone()
}

fn term(child: &mut Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    assert!(child.wait().unwrap().success());
}

#[test]
fn ban_unban_and_bans_against_a_running_serve() {
    let dir = tempfile::tempdir().unwrap();
    let (config, db) = (dir.path().join("b.toml"), dir.path().join("b.sqlite"));
    std::fs::write(&config, SERVE_CONFIG).unwrap();
    let (mut server, base) = serve(&config, &db);
    let ban = [
        "ban",
        "203.0.113.7",
        "--for",
        "1h",
        "--reason",
        "ticket #42",
        "--server",
        &base,
    ];

    // Refused without the admin token, or with a wrong one: nothing is banned.
    for args in [&ban[..], &[&ban[..], &["--token", "wrong"]].concat()] {
        let out = run(args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("401") && err.contains("BANHAMMER_ADMIN_TOKEN"),
            "{err}"
        );
    }
    assert!(listed(&base).is_empty());

    // With it (from the environment, or --token): banned, whatever its counts.
    let out = run(&ban, Some(TOKEN));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = stdout_of(&out);
    assert!(
        said.starts_with("banned 203.0.113.7 until ") && said.contains("left)"),
        "{said}"
    );
    assert_eq!(incr(&base, "203.0.113.7"), json!({"passed": false}));
    let table = stdout_of(&run(&["bans", "--server", &base, "--token", TOKEN], None));
    let row = table
        .lines()
        .find(|l| l.starts_with("203.0.113.7 "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains(" manual ") && row.ends_with("ticket #42"),
        "{table}"
    );
    let bans = listed(&base);
    assert_eq!(bans[0]["origin"], "manual");
    assert_eq!(bans[0]["reason"], "ticket #42");
    let until = bans[0]["until"].as_i64().unwrap();
    assert_eq!(until - bans[0]["from"].as_i64().unwrap(), 3600);

    // A client of `[serve] allow` is never banned.
    let out = run(
        &["ban", "192.0.2.9", "--for", "1h", "--server", &base],
        Some(TOKEN),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout_of(&out).contains("[serve] allow"),
        "{}",
        stdout_of(&out)
    );

    // Killed and restarted: the ban by hand is still there, with its reason and its end.
    server.kill().unwrap();
    server.wait().unwrap();
    let (mut server, base) = serve(&config, &db);
    let bans = listed(&base);
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(
        (&bans[0]["token"], &bans[0]["origin"], &bans[0]["reason"]),
        (
            &json!("203.0.113.7"),
            &json!("manual"),
            &json!("ticket #42")
        )
    );
    assert_eq!(bans[0]["until"].as_i64(), Some(until));
    assert_eq!(incr(&base, "203.0.113.7"), json!({"passed": false}));

    // Unbanned: it passes, and a second unban says there is nothing to end.
    let out = run(&["unban", "203.0.113.7", "--server", &base], Some(TOKEN));
    assert_eq!(stdout_of(&out), "unbanned 203.0.113.7\n");
    let out = run(&["unban", "203.0.113.7", "--server", &base], Some(TOKEN));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_of(&out), "203.0.113.7 is not banned\n");
    assert_eq!(incr(&base, "203.0.113.7"), json!({"passed": true}));

    // The ban by hand was an offence: the rule's next ban of the token, within a day, lasts
    // 100 s × 3 (once in a later second: offences count by the second).
    let from = until - 3600;
    wait::until("a later second", || SystemClock.now().as_unix() > from);
    incr(&base, "203.0.113.7");
    assert_eq!(incr(&base, "203.0.113.7"), json!({"passed": false}));
    let bans = listed(&base);
    assert_eq!(bans[0]["origin"], "rule");
    assert_eq!(
        bans[0]["until"].as_i64().unwrap() - bans[0]["from"].as_i64().unwrap(),
        300
    );
    term(&mut server);

    // The log keeps who banned and why.
    let log = stdout_of(&run(&["bans", "--all", "--db", db.to_str().unwrap()], None));
    let rows: Vec<&str> = log.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{log}");
    assert!(
        rows[0].contains(" BAN ")
            && rows[0].contains(" manual ")
            && rows[0].ends_with("ticket #42")
    );
    assert!(
        rows[1].contains(" UNBAN ") && rows[1].contains(" manual "),
        "{log}"
    );
    assert!(
        rows[2].contains(" BAN ") && rows[2].contains(" login_failed tier 0 "),
        "{log}"
    );
}

/// A `watch` configuration: 40 requests within 60 s ban for 600 s; `10.8.0.0/16` is ignored;
/// records in CSV and JSON lines; the ban and unban commands append their words to
/// `commands.txt`.
fn watch_config(dir: &Path) -> PathBuf {
    let commands = dir.join("commands.txt");
    let command = |placeholders: &str| {
        format!(
            "'''sh -c 'echo \"$@\" >> {}' sh {placeholders}'''",
            commands.display()
        )
    };
    let config = format!(
        "[accesslog]\nformat = \"csv\"\nignore = [\"10.8.0.0/16\"]\n\n\
         [metrics.request]\n[[metrics.request.thresholds]]\nlimit = 40\nwindow = 60\n\
         actions = [\"block_local\"]\naction_duration = 600\n\n\
         [watch]\nstate = \"{}\"\ncsv = \"{}\"\njsonl = \"{}\"\npoll_interval_ms = 20\n\
         ban_command = {}\nunban_command = {}\n",
        dir.join("state.sqlite").display(),
        dir.join("action_record.csv").display(),
        dir.join("action_record.jsonl").display(),
        command("{verb} {ip} {rule} {duration}"),
        command("{verb} {ip} {rule}"),
    );
    let path = dir.join("watch.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// `n` CSV log lines from `ip`, now by the wall clock.
fn lines_now(ip: &str, n: usize) -> String {
    let t = SystemClock.now().as_unix();
    (0..n)
        .map(|_| format!("\"{ip}\",\"-\",\"-\",{t},\"GET / HTTP/1.1\",200,10\n"))
        .collect()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// The records' `VERB,token` (their times are the wall clock's).
fn verbs(records: &[String]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.split_once(',').unwrap().1.to_owned())
        .collect()
}

#[test]
fn ban_and_unban_reach_a_running_watch_and_its_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let config = watch_config(dir.path());
    let (log, state) = (
        dir.path().join("access.log"),
        dir.path().join("state.sqlite"),
    );
    let (csv, commands) = (
        dir.path().join("action_record.csv"),
        dir.path().join("commands.txt"),
    );
    let state_arg = state.to_str().unwrap();
    std::fs::write(&log, "").unwrap();

    // No watcher yet: the command waits in the state file, and says so.
    banhammer_store_sqlite::DecisionStore::open(&state).unwrap();
    let out = run(
        &[
            "ban",
            "203.0.113.9",
            "--for",
            "10m",
            "--db",
            state_arg,
            "--wait",
            "1",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("stays queued"),
        "{}",
        text(&out.stderr)
    );
    // The next watcher on the file applies it, and its sinks hear of it.
    let watch = Watch::start(&config, &log, &[]);
    assert_eq!(verbs(&wait_for_lines(&csv, 1)), ["BAN,203.0.113.9"]);

    // Applied by the running watcher at once: stored, recorded, its command run.
    let out = run(
        &[
            "ban",
            "203.0.113.7",
            "--for",
            "1h",
            "--reason",
            "ticket #42",
            "--db",
            state_arg,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout_of(&out).starts_with("banned 203.0.113.7 until "));
    assert_eq!(
        verbs(&wait_for_lines(&csv, 2)),
        ["BAN,203.0.113.9", "BAN,203.0.113.7"]
    );
    let ran = wait_for_lines(&commands, 2);
    assert_eq!(ran[1], "BAN 203.0.113.7 manual 3600");
    let jsonl = std::fs::read_to_string(dir.path().join("action_record.jsonl")).unwrap();
    let last: Value = serde_json::from_str(jsonl.lines().last().unwrap()).unwrap();
    assert_eq!(
        (&last["decision"], &last["rule"]),
        (&json!("BAN"), &json!("manual"))
    );

    // An address names the token its client counts as: an IPv6 address its /64.
    let out = run(
        &["ban", "2001:db8:1:2::5", "--for", "1h", "--db", state_arg],
        None,
    );
    assert!(stdout_of(&out).starts_with("banned 2001:db8:1:2::/64 until "));

    // `[accesslog] ignore` is watch's allow list: never banned, never counted.
    let out = run(&["ban", "10.8.1.1", "--for", "1h", "--db", state_arg], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout_of(&out).contains("[accesslog] ignore"),
        "{}",
        stdout_of(&out)
    );
    append(&log, &lines_now("10.8.1.1", 60));
    append(&log, &lines_now("198.51.100.1", 40));
    assert_eq!(verbs(&wait_for_lines(&csv, 4))[3], "BAN,198.51.100.1");

    let table = stdout_of(&run(&["bans", "--db", state_arg], None));
    assert!(!table.contains("10.8.1.1"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("203.0.113.7 "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains(" manual ") && row.ends_with("ticket #42"),
        "{table}"
    );

    // Restarted, the watcher still holds the ban by hand: the unban ends it, and the sinks
    // hear of that too.
    watch.stop();
    let watch = Watch::start(&config, &log, &[]);
    let out = run(&["unban", "203.0.113.7", "--db", state_arg], None);
    assert_eq!(
        stdout_of(&out),
        "unbanned 203.0.113.7\n",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(verbs(&wait_for_lines(&csv, 5))[4], "UNBAN,203.0.113.7");
    let ran = wait_for_lines(&commands, 5);
    assert_eq!(ran.last().unwrap(), "UNBAN 203.0.113.7 manual");
    let out = run(&["unban", "203.0.113.7", "--db", state_arg], None);
    assert_eq!(stdout_of(&out), "203.0.113.7 is not banned\n");
    watch.stop();
    // The whole story is in the log.
    let log = stdout_of(&run(
        &["bans", "--all", "--format", "json", "--db", state_arg],
        None,
    ));
    let rows: Vec<Value> = serde_json::from_str(&log).unwrap();
    let manual: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r["rule"] == "manual")
        .map(|r| (r["verb"].as_str().unwrap(), r["token"].as_str().unwrap()))
        .collect();
    assert_eq!(
        manual,
        [
            ("BAN", "203.0.113.9"),
            ("BAN", "203.0.113.7"),
            ("BAN", "2001:db8:1:2::/64"),
            ("UNBAN", "203.0.113.7"),
        ]
    );
    wait::until("nothing left queued", || {
        banhammer_store_sqlite::DecisionStore::open(&state)
            .and_then(|mut s| s.waiting_commands())
            .is_ok_and(|c| c.is_empty())
    });
}

/// `PUT /detect` with `ip`: whether it is answered as an attack.
fn detect(base: &str, ip: &str) -> bool {
    let r: Value = reqwest::blocking::Client::new()
        .put(format!("{base}/detect"))
        .form(&[
            ("email", "one@example.com"),
            ("event_name", "login"),
            ("ip", ip),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    r["detected_attack"].as_bool().unwrap()
}

#[test]
fn serve_counts_ipv6_clients_by_their_64_and_never_counts_its_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let serve_with = |name: &str, extra: &str| {
        let config = dir.path().join(format!("{name}.toml"));
        let text = SERVE_CONFIG.replacen("[serve]\n", &format!("[serve]\n{extra}"), 1);
        std::fs::write(&config, text).unwrap();
        serve(&config, &dir.path().join(format!("{name}.sqlite")))
    };
    // [serve] allow = ["192.0.2.0/24"]: never counted, never detected, never banned.
    let (mut server, base) = serve_with("default", "");
    for _ in 0..20 {
        assert!(!detect(&base, "192.0.2.44"));
        assert_eq!(incr(&base, "192.0.2.44"), json!({"passed": true}));
    }
    // Twelve addresses of one /64 are one client: the 11th request within 5 s is the attack.
    let answers: Vec<bool> = (1..=12)
        .map(|i| detect(&base, &format!("2001:db8:5:6::{i:x}")))
        .collect();
    assert_eq!(
        answers,
        [vec![false; 10], vec![true; 2]].concat(),
        "the /64 reaches the limit together"
    );
    let bans = listed(&base);
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0]["token"], "2001:db8:5:6::/64");
    term(&mut server);
    // With ipv6_prefix = 128, each address is a client of its own.
    let (mut server, base) = serve_with("each", "ipv6_prefix = 128\n");
    for i in 1..=12 {
        assert!(!detect(&base, &format!("2001:db8:5:7::{i:x}")));
    }
    assert!(listed(&base).is_empty());
    term(&mut server);
}

#[test]
fn a_ban_by_hand_on_one_node_is_listed_with_its_reason_by_another() {
    let redis = banhammer_testkit::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("b.toml");
    std::fs::write(&config, SERVE_CONFIG).unwrap();
    let node = |name: &str| {
        common::start_serve(&[
            "--config".as_ref(),
            config.as_os_str(),
            "--db".as_ref(),
            dir.path().join(format!("{name}.sqlite")).as_os_str(),
            "--store".as_ref(),
            redis.url().as_ref(),
        ])
    };
    let ((mut a, a_url), (mut b, b_url)) = (node("a"), node("b"));
    let out = run(
        &[
            "ban",
            "2001:db8:3:4::1",
            "--for",
            "1h",
            "--reason",
            "shared | %ticket",
            "--server",
            &a_url,
        ],
        Some(TOKEN),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bans = listed(&b_url);
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(
        (&bans[0]["token"], &bans[0]["origin"], &bans[0]["reason"]),
        (
            &json!("2001:db8:3:4::/64"),
            &json!("manual"),
            &json!("shared | %ticket")
        )
    );
    assert_eq!(incr(&b_url, "2001:db8:3:4::/64"), json!({"passed": false}));
    let out = run(
        &["unban", "2001:db8:3:4::9", "--server", &b_url],
        Some(TOKEN),
    );
    assert_eq!(stdout_of(&out), "unbanned 2001:db8:3:4::/64\n");
    assert!(listed(&a_url).is_empty());
    term(&mut a);
    term(&mut b);
}
