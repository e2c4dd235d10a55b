//! Drives `replay`, `watch` and `monitor` on logs shaped like real ones: IPv4-mapped clients
//! (Node's morgan, dual-stack sockets), host-name clients (Apache's `HostnameLookups`, the
//! NASA-HTTP logs), lines written out of order by concurrent workers, blank and comment lines,
//! a configuration whose metrics no line feeds, and a CSV export with its header.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod logs;

use logs::{bin, repo, text, wait_for_lines, Watch};

/// 2019-01-01T00:00:00Z.
const T0: i64 = 1_546_300_800;

/// `[01/Jan/2019:HH:MM:SS +0000]` for a time on that day.
fn clf(t: i64) -> String {
    let s = t - T0;
    assert!((0..86_400).contains(&s), "{t}");
    format!(
        "[01/Jan/2019:{:02}:{:02}:{:02} +0000]",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// A combined-format line from `client` at `t`.
fn line(client: &str, t: i64, path: &str) -> String {
    format!(
        "{client} - - {} \"GET {path} HTTP/1.1\" 200 512 \"-\" \"curl/8.5\"\n",
        clf(t)
    )
}

/// Writes `toml` as a configuration in `dir`, with `[watch]` files there too.
fn config(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("banhammer.toml");
    let text = format!(
        "{toml}\n[watch]\nstate = \"{}\"\ncsv = \"{}\"\npoll_interval_ms = 20\n",
        dir.join("state.sqlite").display(),
        dir.join("action_record.csv").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Three requests within a minute ban for ten minutes.
const THREE_A_MINUTE: &str = "[metrics.request]\n[[metrics.request.thresholds]]\nlimit = 3\n\
    window = 60\nactions = [\"block_local\"]\naction_duration = 600\n";

fn replay(config: &Path, log: &Path, extra: &[&str]) -> Output {
    let out = bin()
        .arg("replay")
        .arg("--config")
        .arg(config)
        .arg(log)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    out
}

/// `replay` with its stderr on a terminal (through `script`), where it prints its summary;
/// returns what the terminal showed.
fn summary_on_a_terminal(config: &Path, log: &Path) -> String {
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let command = format!(
        "{} replay --config {} {} 2>&1 >/dev/null",
        quote(Path::new(env!("CARGO_BIN_EXE_banhammer"))),
        quote(config),
        quote(log)
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("script (util-linux) runs a command on a pseudo-terminal");
    assert!(out.status.success(), "{}", text(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The records of one ban of `token` at `at` for `duration` seconds.
fn ban(token: &str, at: i64, duration: i64) -> String {
    format!("{at},BAN,{token}\n{},UNBAN,{token}\n", at + duration)
}

#[test]
fn ipv4_mapped_clients_count_and_are_ignored_as_their_ipv4_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &format!("[accesslog]\nignore = [\"127.0.0.1\"]\n{THREE_A_MINUTE}"),
    );
    // As Node's morgan logs IPv4 clients of a dual-stack socket. Before, every such client
    // was the one token `::/64` (six requests: banned), and 127.0.0.1 was not ignored.
    let mut log = String::new();
    for i in 0..3 {
        log.push_str(&line("::ffff:203.0.113.9", T0 + i, "/"));
        log.push_str(&line("::ffff:127.0.0.1", T0 + i, "/health"));
    }
    log.push_str(&line("::ffff:198.51.100.7", T0 + 5, "/"));
    log.push_str(&line("::ffff:198.51.100.7", T0 + 6, "/"));
    let path = dir.path().join("access.log");
    std::fs::write(&path, &log).unwrap();
    let out = replay(&config, &path, &[]);
    assert_eq!(text(&out.stdout), ban("203.0.113.9", T0 + 2, 600));
    // The monitor shows them as IPv4 clients too.
    let out = bin()
        .args(["monitor", "--replay", "--json", "--log"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(
        report["total"]["top_clients"],
        serde_json::json!([["127.0.0.1", 3], ["203.0.113.9", 3], ["198.51.100.7", 2]])
    );
}

#[test]
fn host_name_clients_are_counted_by_name_in_lower_case() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &format!("[accesslog]\nformat = \"common\"\nignore = [\"0.0.0.0/0\"]\n{THREE_A_MINUTE}"),
    );
    // NASA-HTTP, July 1995: Apache with HostnameLookups on. The ignore list (every IPv4
    // address) does not cover names; a client field that is neither is still malformed.
    let nasa = "in24.inetnebr.com - - [01/Jul/1995:00:00:01 -0400] \
        \"GET /shuttle/missions/sts-68/news/sts-68-mcc-05.txt HTTP/1.0\" 200 1839\n\
        uplherc.upl.com - - [01/Jul/1995:00:00:07 -0400] \"GET / HTTP/1.0\" 304 0\n\
        IN24.INETNEBR.COM - - [01/Jul/1995:00:00:08 -0400] \
        \"GET /shuttle/countdown/ HTTP/1.0\" 200 3985\n\
        199.120.110.21 - - [01/Jul/1995:00:00:09 -0400] \
        \"GET /shuttle/missions/sts-73/mission-sts-73.html HTTP/1.0\" 200 4085\n\
        in24..inetnebr.com - - [01/Jul/1995:00:00:10 -0400] \"GET / HTTP/1.0\" 200 1\n\
        in24.inetnebr.com - - [01/Jul/1995:00:00:11 -0400] \"GET /images/ HTTP/1.0\" 200 9\n";
    let path = dir.path().join("NASA_access_log_Jul95");
    std::fs::write(&path, nasa).unwrap();
    let out = replay(&config, &path, &[]);
    assert_eq!(
        text(&out.stdout),
        ban("in24.inetnebr.com", 804_571_211, 600)
    );
    assert_eq!(
        text(&out.stderr),
        format!(
            "{}:5: `in24..inetnebr.com` is not an IP address or host name (column 1)\n",
            path.display()
        )
    );
}

/// A small deterministic generator (xorshift64*), so that each seed is one fixed log.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % n
    }
}

/// A log in time order over ten minutes: twelve clients at their own rates, some in bursts
/// that cross the thresholds, a few of them on /login; one line per entry.
fn sorted_log(rng: &mut Rng) -> Vec<(i64, String)> {
    let mut lines = Vec::new();
    for client in 0..12u64 {
        let rate = 1 + rng.below(6);
        let mut t = T0 + i64::try_from(rng.below(30)).unwrap();
        while t < T0 + 600 {
            let burst = if rng.below(8) == 0 {
                5 + rng.below(20)
            } else {
                1
            };
            for _ in 0..burst {
                let path = if client % 4 == 0 { "/login" } else { "/" };
                lines.push((t, line(&format!("10.0.{client}.1"), t, path)));
            }
            t += i64::try_from(rng.below(rate * 4) + 1).unwrap();
        }
    }
    // A stable sort: lines of one second keep their order.
    lines.sort_by_key(|(t, _)| *t);
    lines
}

/// `lines` as written by workers that each finish a request up to `delay` seconds after it
/// started: every line is at most `delay` older than any line before it.
fn shuffled(lines: &[(i64, String)], delay: i64, rng: &mut Rng) -> Vec<(i64, String)> {
    let d = u64::try_from(delay).unwrap();
    let mut keyed: Vec<(i64, usize, &(i64, String))> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (l.0 + i64::try_from(rng.below(d + 1)).unwrap(), i, l))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, _, l)| l.clone()).collect()
}

/// `lines` sorted by time, stably: what a shuffled log must give is what this gives.
fn stable_sort(lines: &[(i64, String)]) -> Vec<(i64, String)> {
    let mut sorted = lines.to_vec();
    sorted.sort_by_key(|(t, _)| *t);
    sorted
}

fn write_lines(path: &Path, lines: &[(i64, String)]) {
    let text: String = lines.iter().map(|(_, l)| l.as_str()).collect();
    std::fs::write(path, text).unwrap();
}

/// Two tiers on every request, one on /login; `after_violation`, so that when a hold ends
/// depends on every line in its window.
const RULES: &str = "[accesslog]\nformat = \"combined\"\n\
    [[accesslog.match]]\nmetric = \"login\"\npath = \"/login\"\n\
    [metrics.request]\n[[metrics.request.thresholds]]\nlimit = 12\nwindow = 10\n\
    actions = [\"block_local\"]\naction_duration = 30\npolicy = \"after_violation\"\n\
    [[metrics.request.thresholds]]\nlimit = 40\nwindow = 120\nactions = [\"block_local\"]\n\
    action_duration = 90\n\
    [metrics.login]\n[[metrics.login.thresholds]]\nlimit = 15\nwindow = 60\n\
    actions = [\"block_local\"]\naction_duration = 120\npolicy = \"after_violation\"\n";

#[test]
fn a_log_shuffled_within_max_delay_gives_exactly_the_sorted_logs_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), RULES);
    let (sorted_path, shuffled_path) = (
        dir.path().join("sorted.log"),
        dir.path().join("shuffled.log"),
    );
    for (seed, delay, flag) in [
        (1, 60, None),
        (2, 60, None),
        (3, 5, Some("5")),
        (4, 120, Some("2m")),
    ] {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
        let shuffled = shuffled(&sorted_log(&mut rng), delay, &mut rng);
        let sorted = stable_sort(&shuffled);
        let moved = sorted
            .iter()
            .zip(&shuffled)
            .filter(|(a, b)| a.1 != b.1)
            .count();
        assert!(moved > sorted.len() / 2, "seed {seed}: a real shuffle");
        write_lines(&sorted_path, &sorted);
        write_lines(&shuffled_path, &shuffled);
        let mut args = vec!["--format", "jsonl"];
        args.extend(flag.iter().flat_map(|d| ["--max-delay", d]));
        let expected = replay(&config, &sorted_path, &args);
        let got = replay(&config, &shuffled_path, &args);
        let decisions = text(&expected.stdout);
        assert!(decisions.lines().count() >= 4, "seed {seed}: {decisions}");
        assert_eq!(text(&got.stdout), decisions, "seed {seed}, delay {delay}");
        assert_eq!(text(&got.stderr), "", "nothing late, nothing malformed");
    }
}

#[test]
fn a_line_later_than_max_delay_is_reported_late_and_still_counted() {
    let dir = tempfile::tempdir().unwrap();
    // Three requests within an hour ban for ten minutes.
    let config = config(
        dir.path(),
        "[accesslog]\nformat = \"combined\"\n\
         [metrics.request]\n[[metrics.request.thresholds]]\nlimit = 3\nwindow = 3600\n\
         actions = [\"block_local\"]\naction_duration = 600\n",
    );
    let mut log = String::new();
    // 10.0.0.1: two requests, then its third is written 98 s late, after other clients'.
    log.push_str(&line("10.0.0.1", T0, "/"));
    log.push_str(&line("10.0.0.1", T0 + 1, "/"));
    for t in (0..=100).step_by(10) {
        log.push_str(&line(&format!("10.0.1.{t}"), T0 + t, "/"));
    }
    log.push_str(&line("10.0.0.1", T0 + 2, "/"));
    let path = dir.path().join("access.log");
    std::fs::write(&path, &log).unwrap();
    let out = replay(&config, &path, &[]);
    // Counted in its own second, inside the window: 10.0.0.1 reached 3. Decided at the
    // clock's time, as a late event is: lines are counted up to the newest less max_delay.
    assert_eq!(text(&out.stdout), ban("10.0.0.1", T0 + 40, 600));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{}:14: late line: logged at {}, 98s before the newest line (max_delay is 60s); \
             counted out of order\n",
            path.display(),
            T0 + 2
        )
    );
    // A bigger delay puts it in order: the ban is at its own time.
    let out = replay(&config, &path, &["--max-delay", "100"]);
    assert_eq!(text(&out.stdout), ban("10.0.0.1", T0 + 2, 600));
    assert_eq!(text(&out.stderr), "");
    // The summary on a terminal counts it.
    let shown = summary_on_a_terminal(&config, &path);
    assert!(
        shown.contains("14 lines (0 malformed, 0 skipped, 0 ignored, 1 late), 1 bans"),
        "{shown}"
    );
}

#[test]
fn empty_lines_and_comments_are_skipped_not_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &format!("[accesslog]\nformat = \"combined\"\n{THREE_A_MINUTE}"),
    );
    let request = |t| line("10.0.0.1", t, "/").trim_end().to_owned();
    let log = [
        "#Version: 1.0".to_owned(),
        "#Fields: date time c-ip cs-method".to_owned(),
        request(T0),
        String::new(),
        "   ".to_owned(),
        request(T0 + 1),
        "# rotated here".to_owned(),
        String::new(),
        request(T0 + 2),
    ]
    .join("\n");
    let path = dir.path().join("access.log");
    std::fs::write(&path, log).unwrap();
    let out = replay(&config, &path, &[]);
    assert_eq!(text(&out.stderr), "", "nothing malformed");
    assert_eq!(text(&out.stdout), ban("10.0.0.1", T0 + 2, 600));
    let shown = summary_on_a_terminal(&config, &path);
    assert!(
        shown.contains("9 lines (0 malformed, 6 skipped, 0 ignored, 0 late), 1 bans"),
        "{shown}"
    );
}

#[test]
fn watch_in_event_time_puts_a_shuffled_log_in_order_as_replay_does() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), RULES);
    let mut rng = Rng(7);
    let mut shuffled = shuffled(&sorted_log(&mut rng), 60, &mut rng);
    let mut sorted = stable_sort(&shuffled);
    // A last line an hour later moves the clock past every ban's end.
    let last = (T0 + 4200, line("10.9.9.9", T0 + 4200, "/"));
    sorted.push(last.clone());
    shuffled.push(last);
    let (sorted_path, log) = (dir.path().join("sorted.log"), dir.path().join("access.log"));
    write_lines(&sorted_path, &sorted);
    write_lines(&log, &shuffled);
    let expected = text(&replay(&config, &sorted_path, &[]).stdout);
    let expected: Vec<&str> = expected.lines().collect();
    let watch = Watch::start(&config, &log, &["--clock", "event", "--from-start"]);
    let got = wait_for_lines(&dir.path().join("action_record.csv"), expected.len());
    assert_eq!(got, expected);
    // A line more than max_delay late is logged as late, and counted.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(line("10.0.0.1", T0, "/").as_bytes())
        .unwrap();
    let logged = watch.wait_for_log("late line");
    assert!(
        logged.contains(&format!(
            "late line: logged at {T0}, 4200s before the newest line (max_delay is 60s)"
        )),
        "{logged}"
    );
    assert!(!logged.contains("malformed"), "{logged}");
}

#[test]
fn monitor_replay_puts_a_shuffled_log_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(11);
    let shuffled = shuffled(&sorted_log(&mut rng), 60, &mut rng);
    let sorted = stable_sort(&shuffled);
    let (sorted_path, shuffled_path) = (
        dir.path().join("sorted.log"),
        dir.path().join("shuffled.log"),
    );
    write_lines(&sorted_path, &sorted);
    write_lines(&shuffled_path, &shuffled);
    let monitor = |log: &Path| {
        let out = bin()
            .args(["monitor", "--replay", "--json", "--interval", "10", "--log"])
            .arg(log)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    };
    let (expected, _) = monitor(&sorted_path);
    let (got, stderr) = monitor(&shuffled_path);
    assert!(expected.lines().count() >= 60, "{expected}");
    assert_eq!(got, expected);
    assert!(!stderr.contains("late"), "{stderr}");
    // With no room for disorder, the shuffled lines are late.
    let out = bin()
        .args(["monitor", "--replay", "--json", "--max-delay", "0", "--log"])
        .arg(&shuffled_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("late line"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_configuration_whose_metrics_no_line_feeds_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let seed = repo().join("examples/banhammer.toml");
    let log = repo().join("tests/data/access-head-3739.log");
    let out = replay(&seed, &log, &[]);
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    for metric in ["login_failed", "login_successful"] {
        assert!(
            stderr.contains(&format!(
                "warning: metric `{metric}` is fed by no [[accesslog.match]] nor the \
                 request_metric: no log line counts for it"
            )),
            "{stderr}"
        );
    }
    // watch says it in its log; a metric that lines do feed is not named.
    let config = config(
        dir.path(),
        &format!("{THREE_A_MINUTE}[metrics.login_failed]\n"),
    );
    let watch = Watch::start(&config, &dir.path().join("access.log"), &[]);
    let logged = watch.log.lock().unwrap().clone();
    assert!(
        logged.contains("metric `login_failed` is fed by no"),
        "{logged}"
    );
    assert!(!logged.contains("metric `request`"), "{logged}");
}

/// The public Datadog exercise's log: a CSV export with its header.
fn datadog_sample(path: &Path) {
    let mut text = String::from(
        "\"remotehost\",\"rfc931\",\"authuser\",\"date\",\"request\",\"status\",\"bytes\"\n",
    );
    for i in 0..30 {
        writeln!(
            text,
            "\"10.0.0.{}\",\"-\",\"apache\",{},\"GET /api/user HTTP/1.0\",200,1234",
            i % 3 + 1,
            1_549_573_860 + i / 2
        )
        .unwrap();
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_csv_export_with_its_header_is_read_as_csv_without_being_told() {
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("sample.csv");
    datadog_sample(&sample);
    let out = bin()
        .args(["monitor", "--replay", "--json", "--log"])
        .arg(&sample)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{}:1: a CSV header: reading the log as csv\n",
            sample.display()
        )
    );
    let report: Value = serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(report["total"]["requests"], 30);
    // replay, with a configuration that leaves the format to its default.
    let config = config(
        dir.path(),
        "[metrics.request]\n[[metrics.request.thresholds]]\n\
        limit = 10\nwindow = 60\nactions = [\"block_local\"]\naction_duration = 60\n",
    );
    let out = replay(&config, &sample, &[]);
    assert_eq!(
        text(&out.stdout),
        "1549573873,BAN,10.0.0.1\n1549573874,BAN,10.0.0.2\n1549573874,BAN,10.0.0.3\n\
         1549573933,UNBAN,10.0.0.1\n1549573934,UNBAN,10.0.0.2\n1549573934,UNBAN,10.0.0.3\n"
    );
    assert_eq!(
        text(&out.stderr),
        format!(
            "{}:1: a CSV header: reading the log as csv\n",
            sample.display()
        )
    );
    // A configured format is used as written, and a combined log is said to be combined.
    let combined = dir.path().join("access.log");
    std::fs::write(&combined, line("10.0.0.1", T0, "/")).unwrap();
    let out = replay(&config, &combined, &[]);
    assert_eq!(
        text(&out.stderr),
        format!(
            "{}:1: no CSV header: reading the log as combined\n",
            combined.display()
        )
    );
}
