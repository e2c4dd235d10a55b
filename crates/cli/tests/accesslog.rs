//! Drives `banhammer replay` and `banhammer watch` on real access logs.
//!
//! Contents: the challenge's required output · inputs (gzip, stdin, several files) ·
//! malformed lines · `watch` against `replay` on the same growing file · restart without
//! double counting · rotation · commands · a file that appears later.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use banhammer_store_sqlite::DecisionStore;
use banhammer_testkit::wait;

mod logs;

use logs::{bin, repo, text, wait_for_lines, Watch};

fn challenge_log() -> PathBuf {
    repo().join("tests/data/access-head-3739.log")
}

fn challenge_config() -> PathBuf {
    repo().join("examples/access-log-challenge.toml")
}

fn replay(args: &[&Path]) -> Output {
    let mut cmd = bin();
    cmd.arg("replay")
        .arg("--config")
        .arg(challenge_config())
        .args(args);
    cmd.output().unwrap()
}

#[test]
fn replay_prints_the_challenges_required_output() {
    let out = replay(&[&challenge_log()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "1546271816,BAN,58.236.203.13\n1546280095,UNBAN,58.236.203.13\n"
    );
}

#[test]
fn replay_reads_gzip_stdin_and_several_files_alike() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::read(challenge_log()).unwrap();
    // gzip, by its magic bytes whatever the name.
    let gz = dir.path().join("access.log.1");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&log).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let expected = "1546271816,BAN,58.236.203.13\n1546280095,UNBAN,58.236.203.13\n";
    assert_eq!(text(&replay(&[&gz]).stdout), expected);
    // Two files, split mid-way, read in order as one.
    let cut = log
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1500)
        .unwrap()
        .0
        + 1;
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    std::fs::write(&a, &log[..cut]).unwrap();
    std::fs::write(&b, &log[cut..]).unwrap();
    assert_eq!(text(&replay(&[&a, &b]).stdout), expected);
    // Standard input.
    let mut child = bin()
        .args(["replay", "--config"])
        .arg(challenge_config())
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&log).unwrap();
    assert_eq!(text(&child.wait_with_output().unwrap().stdout), expected);
}

#[test]
fn replay_reports_malformed_lines_and_keeps_counting() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = std::fs::read(challenge_log()).unwrap();
    log.extend_from_slice(b"\nthis is not a log line\n");
    log.extend_from_slice(&vec![b'z'; 100_000]);
    log.extend_from_slice(b"\n\xff\xfe\n");
    let path = dir.path().join("access.log");
    std::fs::write(&path, &log).unwrap();
    let out = replay(&[&path]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "1546271816,BAN,58.236.203.13\n1546280095,UNBAN,58.236.203.13\n"
    );
    let origin = path.display().to_string();
    let errs = text(&out.stderr);
    assert!(
        errs.contains(&format!(
            "{origin}:3741: expected `[` before the time at column 13"
        )),
        "{errs}"
    );
    assert!(
        errs.contains(&format!("{origin}:3742: line longer than 16384 bytes")),
        "{errs}"
    );
    assert!(
        errs.contains(&format!("{origin}:3743: line is not UTF-8")),
        "{errs}"
    );
}

#[test]
fn replay_jsonl_names_the_rule_that_reached_furthest() {
    let out = bin()
        .args(["replay", "--format", "jsonl", "--config"])
        .arg(challenge_config())
        .arg(challenge_log())
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["rule"], "request");
    assert_eq!(lines[0]["value"], 40);
    assert_eq!(lines[1]["decision"], "UNBAN");
    assert_eq!(
        lines[1]["rule"], "login",
        "the /login rule still held when the clock stopped"
    );
}

/// Line time, each line counted as it is read (no reordering): these tests are about reading
/// the file (rotation, restarts), and each of their lines decides something at once. A line
/// waiting to be put in order is lost if watch is killed; with no delay none waits.
const EVENT_TIME_UNORDERED: [&str; 4] = ["--clock", "event", "--max-delay", "0"];

/// The name `watch` files its read position of `log` under in its state: the path as it
/// resolved it when it started (canonical if the file existed then, as given if not). Call it
/// in the same state of the file.
fn position_key(log: &Path) -> String {
    std::fs::canonicalize(log)
        .unwrap_or_else(|_| log.to_owned())
        .display()
        .to_string()
}

/// Waits until `watch` has committed to its state file that it read the file now at `log` up
/// to `offset` (a whole line's end): the lines before are counted and their decisions stored.
/// Only reads the state.
fn wait_until_read(state: &Path, key: &str, log: &Path, offset: usize) {
    let file = std::fs::metadata(log).unwrap();
    let store = DecisionStore::open(state).unwrap();
    let offset = offset as u64;
    let what = format!("watch committing {} read to byte {offset}", log.display());
    wait::until(&what, || {
        store
            .position(key)
            .unwrap()
            .is_some_and(|p| (p.dev, p.ino, p.offset) == (file.dev(), file.ino(), offset))
    });
}

/// The offset just after the last whole line of `bytes`.
fn whole_lines(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
}

fn watch_config(dir: &Path, extra: &str) -> PathBuf {
    let base = std::fs::read_to_string(challenge_config()).unwrap();
    let base = base.split("[watch]").next().unwrap().to_owned();
    let config = format!(
        "{base}[watch]\nstate = \"{}\"\ncsv = \"{}\"\npoll_interval_ms = 20\n{extra}",
        dir.join("state.sqlite").display(),
        dir.join("action_record.csv").display()
    );
    let path = dir.join("watch.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// A line of the challenge's format at unix time `t`.
fn line_at(ip: &str, t: i64, path: &str) -> String {
    // 1546272000 is 01/Jan/2019:00:00:00 +0800.
    let s = t - 1_546_272_000;
    assert!((0..86_400).contains(&s));
    format!(
        "{ip} - - [01/Jan/2019:{:02}:{:02}:{:02} +0800] \"GET {path} HTTP/1.1\" 200 1 \"\" \"\"\n",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

#[test]
fn watch_in_event_time_agrees_with_replay_on_a_growing_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = watch_config(dir.path(), "");
    let log_path = dir.path().join("access.log");
    let mut log = std::fs::read(challenge_log()).unwrap();
    log.push(b'\n');
    // A last line three hours later lets every ban run out in event time.
    log.extend_from_slice(line_at("10.9.9.9", 1_546_283_000, "/").as_bytes());
    append(&log_path, &log[..1000]);
    let watch = Watch::start(&config, &log_path, &["--clock", "event", "--from-start"]);
    let (state, key) = (dir.path().join("state.sqlite"), position_key(&log_path));
    // Grow the file in uneven pieces, cutting lines anywhere; after each, the watcher reads
    // every whole line so far (a cut line waits for its end).
    let mut at: usize = 1000;
    for step in [7, 4000, 1, 50_000, 123_456, usize::MAX] {
        let end = at.saturating_add(step).min(log.len());
        append(&log_path, &log[at..end]);
        at = end;
        wait_until_read(&state, &key, &log_path, whole_lines(&log[..at]));
    }
    let records = wait_for_lines(&dir.path().join("action_record.csv"), 2);
    watch.stop();
    let replayed = replay(&[&log_path]);
    assert_eq!(records.join("\n") + "\n", text(&replayed.stdout));
    // With the clock running on past the head's last line, the /login rule's hold runs to its
    // natural end (1546272952) instead of being cut at 1546272895: 1546272952 + 7200.
    assert_eq!(
        records,
        [
            "1546271816,BAN,58.236.203.13",
            "1546280152,UNBAN,58.236.203.13"
        ]
    );
}

#[test]
fn a_restarted_watch_keeps_its_ban_and_counts_no_line_twice() {
    let dir = tempfile::tempdir().unwrap();
    let config = watch_config(dir.path(), "");
    let log_path = dir.path().join("access.log");
    std::fs::copy(challenge_log(), &log_path).unwrap();
    append(&log_path, b"\n");
    let csv = dir.path().join("action_record.csv");
    let watch = Watch::start(&config, &log_path, &["--clock", "event", "--from-start"]);
    assert_eq!(wait_for_lines(&csv, 1), ["1546271816,BAN,58.236.203.13"]);
    watch.stop();
    // Restarted: 39 more requests from a fresh address right after the log's end. Had the
    // earlier lines been counted again, other addresses would be banned too.
    let watch = Watch::start(&config, &log_path, &["--clock", "event"]);
    let mut more = String::new();
    for i in 0..39 {
        more.push_str(&line_at("10.1.1.1", 1_546_272_900 + i / 10, "/"));
    }
    more.push_str(&line_at("10.2.2.2", 1_546_290_000, "/"));
    append(&log_path, more.as_bytes());
    let records = wait_for_lines(&csv, 2);
    watch.stop();
    // One BAN, one UNBAN: the ban and how far it reached (the /login rule's full hold,
    // 1546272952 + 7200) survived the restart.
    assert_eq!(
        records,
        [
            "1546271816,BAN,58.236.203.13",
            "1546280152,UNBAN,58.236.203.13"
        ]
    );
}

#[test]
fn watch_follows_rotation_and_a_file_that_appears_later() {
    let dir = tempfile::tempdir().unwrap();
    let config = watch_config(dir.path(), "");
    let log_path = dir.path().join("access.log");
    let csv = dir.path().join("action_record.csv");
    let state = dir.path().join("state.sqlite");
    // Started before the file exists: it looked for it and found none.
    let watch = Watch::start(&config, &log_path, &EVENT_TIME_UNORDERED);
    let key = position_key(&log_path);
    let burst = |ip: &str, t: i64| -> String { (0..20).map(|_| line_at(ip, t, "/")).collect() };
    // Created after the watcher started: read from its start.
    let first = burst("10.0.0.1", 1_546_272_000);
    append(&log_path, first.as_bytes());
    wait_until_read(&state, &key, &log_path, first.len());
    // Rotation by rename: the rest of the old file, then the new one (read only once the old
    // one is read to its end).
    std::fs::rename(&log_path, dir.path().join("access.log.1")).unwrap();
    append(
        &dir.path().join("access.log.1"),
        burst("10.0.0.1", 1_546_272_001).as_bytes(),
    );
    let second = burst("10.0.0.2", 1_546_272_002);
    append(&log_path, second.as_bytes());
    wait_until_read(&state, &key, &log_path, second.len());
    // Copy-truncate: the file is emptied in place and written again.
    OpenOptions::new()
        .write(true)
        .open(&log_path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log_path, burst("10.0.0.2", 1_546_272_003).as_bytes());
    let records = wait_for_lines(&csv, 2);
    watch.stop();
    assert_eq!(
        records,
        ["1546272001,BAN,10.0.0.1", "1546272003,BAN,10.0.0.2"]
    );
}

#[test]
fn watch_runs_the_ban_command_without_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("commands.txt");
    // A TOML literal string: the shell script's quotes pass through as typed.
    let command = format!(
        "sh -c 'printf \"%s %s\\n\" \"$1\" \"$2\" >> {}' sh {{ip}} {{duration}}",
        out.display()
    );
    let config = watch_config(dir.path(), &format!("ban_command = '''{command}'''\n"));
    let log_path = dir.path().join("access.log");
    std::fs::copy(challenge_log(), &log_path).unwrap();
    let watch = Watch::start(&config, &log_path, &["--clock", "event", "--from-start"]);
    let state = dir.path().join("state.sqlite");
    let size = whole_lines(&std::fs::read(&log_path).unwrap());
    wait_until_read(&state, &position_key(&log_path), &log_path, size);
    watch.stop();
    let ran = std::fs::read_to_string(&out).unwrap();
    let ran: Vec<&str> = ran.lines().collect();
    // Banned at 1546271816 for about 600 s, then extended by the /login rule to about 7200 s
    // past its holds: the extend command (the ban command unless set) runs again with the
    // time left. Extensions within one step are one command, so how many ran depends on
    // the steps.
    assert!(ran.len() >= 2, "{ran:?}");
    let left: Vec<u64> = ran
        .iter()
        .map(|r| r.strip_prefix("58.236.203.13 ").unwrap().parse().unwrap())
        .collect();
    assert!(
        left[0] < 1000 && left[1..].iter().all(|l| *l > 7000),
        "{ran:?}"
    );
}

/// A `[watch]` configuration on CSV logs where every client's first line is a BAN (one record
/// per client), so that the record file counts the lines read.
fn one_ban_per_client_config(dir: &Path) -> PathBuf {
    let config = format!(
        "[accesslog]\nformat = \"csv\"\n[watch]\nstate = \"{}\"\ncsv = \"{}\"\n\
         poll_interval_ms = 20\n[metrics.request]\n[[metrics.request.thresholds]]\nlimit = 1\n\
         window = 60\nactions = [\"block_local\"]\naction_duration = 100000\n",
        dir.join("state.sqlite").display(),
        dir.join("action_record.csv").display()
    );
    let path = dir.join("watch.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// `n` CSV log lines, one per client `10.<net>.0.1`, `10.<net>.0.2`, …, a second apart from
/// 2019-02-07T21:11:00Z + `net` minutes.
fn client_lines(net: u8, n: u8) -> String {
    (1..=n)
        .map(|i| {
            let t = 1_549_573_860 + i64::from(net) * 60 + i64::from(i);
            format!("\"10.{net}.0.{i}\",\"-\",\"-\",{t},\"GET / HTTP/1.1\",200,10\n")
        })
        .collect()
}

/// The clients banned in the record file, by their network (`10.<net>.…`), in order.
fn banned_per_net(records: &[String]) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for r in records {
        let net = r.split(',').nth(2).unwrap().split('.').nth(1).unwrap();
        match counts.last_mut() {
            Some((n, c)) if n == net => *c += 1,
            _ => counts.push((net.to_owned(), 1)),
        }
    }
    counts
}

/// A watch that read `lines` lines (clients `10.1.0.*`) from `log` from its start, stopped.
struct Stopped {
    config: PathBuf,
    log: PathBuf,
    csv: PathBuf,
    stderr: String,
}

fn watched_then_stopped(dir: &Path, log: PathBuf, lines: u8) -> Stopped {
    let config = one_ban_per_client_config(dir);
    let csv = dir.join("action_record.csv");
    append(&log, client_lines(1, lines).as_bytes());
    let watch = Watch::start(
        &config,
        &log,
        &[&EVENT_TIME_UNORDERED[..], &["--from-start"]].concat(),
    );
    wait_for_lines(&csv, lines.into());
    let stderr = watch.stop();
    Stopped {
        config,
        log,
        csv,
        stderr,
    }
}

impl Stopped {
    /// Starts watch again, waits for `records` records in all, stops it; returns the records
    /// and its stderr.
    fn restart(&self, records: usize) -> (Vec<String>, String) {
        let watch = Watch::start(&self.config, &self.log, &EVENT_TIME_UNORDERED);
        let got = wait_for_lines(&self.csv, records);
        (got, watch.stop())
    }
}

#[test]
fn a_rotation_while_watch_was_stopped_reads_the_rest_of_the_rotated_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let stopped = watched_then_stopped(dir.path(), log.clone(), 10);
    // While stopped: 50 more lines in the old file, then rotated by rename (logrotate's
    // default), and a new file with 20 lines.
    append(&log, client_lines(2, 50).as_bytes());
    std::fs::rename(&log, dir.path().join("access.log.1")).unwrap();
    append(&log, client_lines(3, 20).as_bytes());
    let (records, stderr) = stopped.restart(80);
    assert_eq!(
        banned_per_net(&records),
        [("1".into(), 10), ("2".into(), 50), ("3".into(), 20)],
        "the rest of the rotated file, then the new one: {stderr}"
    );
    assert!(stderr.contains("access.log.1"), "{stderr}");
}

#[test]
fn a_copytruncate_while_watch_was_stopped_reads_the_new_content_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let stopped = watched_then_stopped(dir.path(), log.clone(), 10);
    // While stopped: copytruncate (the content copied away, the file emptied in place), then
    // 60 new lines, more bytes than were read before.
    std::fs::copy(&log, dir.path().join("access.log.1")).unwrap();
    std::fs::File::create(&log).unwrap();
    append(&log, client_lines(4, 60).as_bytes());
    let (records, stderr) = stopped.restart(70);
    assert_eq!(
        banned_per_net(&records),
        [("1".into(), 10), ("4".into(), 60)],
        "{stderr}"
    );
    assert!(stderr.contains("truncated"), "{stderr}");
}

#[test]
fn a_rotated_file_gone_while_watch_was_stopped_is_a_warning_that_lines_may_be_lost() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let stopped = watched_then_stopped(dir.path(), log.clone(), 10);
    // Rotated and compressed at once: the old file is gone.
    append(&log, client_lines(2, 5).as_bytes());
    std::fs::remove_file(&log).unwrap();
    append(&log, client_lines(3, 20).as_bytes());
    let (records, stderr) = stopped.restart(30);
    assert_eq!(
        banned_per_net(&records),
        [("1".into(), 10), ("3".into(), 20)],
        "{stderr}"
    );
    assert!(stderr.contains("may have been lost"), "{stderr}");
}

#[test]
fn watch_log_lines_show_untrusted_names_escaped_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // A log directory, and later a rotated file, whose names carry a terminal escape, a bell
    // and a newline starting a forged log line.
    let forged = "\u{1b}]0;pwned\u{7}\n2019-02-07T21:11:00Z  WARN banhammer: forged";
    let logs = dir.path().join(format!("logs{forged}"));
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("access.log");
    let stopped = watched_then_stopped(dir.path(), log.clone(), 2);
    std::fs::rename(&log, logs.join(format!("access.log.1{forged}"))).unwrap();
    append(&log, client_lines(2, 2).as_bytes());
    let (_, restarted) = stopped.restart(4);
    let stderr = stopped.stderr + &restarted;
    assert!(stderr.contains("rotated while not followed"), "{stderr}");
    for line in stderr.lines().filter(|l| l.contains("forged")) {
        assert!(
            line.contains("Watching.") || line.contains("rotated while not followed"),
            "a forged line: {line:?}"
        );
        assert!(line.contains("\\u{a}2019-02-07T21:11:00Z"), "{line:?}");
        assert!(!line.contains('\u{7}'), "{line:?}");
    }
}

#[test]
fn a_watch_killed_and_restarted_keeps_the_counts_of_the_lines_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = watch_config(dir.path(), "");
    let log_path = dir.path().join("access.log");
    let state = dir.path().join("state.sqlite");
    let csv = dir.path().join("action_record.csv");
    // 39 requests in one minute: one short of the 40 that ban.
    let lines: String = (0..39)
        .map(|i| line_at("10.3.3.3", 1_546_272_000 + i, "/"))
        .collect();
    append(&log_path, lines.as_bytes());
    let mut watch = Watch::start(
        &config,
        &log_path,
        &[&EVENT_TIME_UNORDERED[..], &["--from-start"]].concat(),
    );
    let key = position_key(&log_path);
    wait_until_read(&state, &key, &log_path, lines.len());
    // Killed without warning: the counts were committed with the read position.
    watch.child.kill().unwrap();
    watch.child.wait().unwrap();
    let watch = Watch::start(&config, &log_path, &EVENT_TIME_UNORDERED);
    let last = line_at("10.3.3.3", 1_546_272_040, "/");
    append(&log_path, last.as_bytes());
    // The 40th request within a minute bans, however many restarts came in between (before,
    // the restarted watch started from zero and never banned).
    assert_eq!(wait_for_lines(&csv, 1), ["1546272040,BAN,10.3.3.3"]);
    watch.stop();
}
