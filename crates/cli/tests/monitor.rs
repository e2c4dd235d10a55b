//! Drives `banhammer monitor` on access logs in event time: reports, the alert and its
//! recovery, exactly worded, in order.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[cfg(feature = "capture")]
mod trace;

const T0: i64 = 1_549_573_860;

/// A CSV log: `per_second(s)` requests in each second `s` of `0..secs`, to a few sections,
/// with the header, a line a few seconds out of order, and one malformed line.
fn csv_log(path: &Path, secs: i64, per_second: impl Fn(i64) -> usize) -> usize {
    let mut text = String::from(
        "\"remotehost\",\"rfc931\",\"authuser\",\"date\",\"request\",\"status\",\"bytes\"\n",
    );
    let sections = ["/api/user", "/api/help", "/report", "/pages/create"];
    let mut n = 0;
    for s in 0..secs {
        for i in 0..per_second(s) {
            let status = if i % 10 == 0 { 500 } else { 200 };
            writeln!(
                text,
                "\"10.0.0.{}\",\"-\",\"apache\",{},\"GET {} HTTP/1.0\",{status},1000",
                i % 5 + 1,
                T0 + s,
                sections[(n + i) % sections.len()]
            )
            .unwrap();
            n += 1;
        }
        if s == 20 {
            // Written late: its own time is 3 s earlier.
            writeln!(
                text,
                "\"10.0.0.9\",\"-\",\"apache\",{},\"GET /late HTTP/1.0\",200,10",
                T0 + s - 3
            )
            .unwrap();
            n += 1;
            text.push_str("not a log line\n");
        }
    }
    std::fs::write(path, text).unwrap();
    n
}

fn monitor(log: &Path, extra: &[&str]) -> (Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_banhammer"))
        .args(["monitor", "--log"])
        .arg(log)
        .args(["--log-format", "csv", "--replay", "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, String::from_utf8(out.stderr).unwrap())
}

#[test]
fn a_replay_reports_every_interval_and_counts_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.csv");
    let sent = csv_log(&log, 60, |_| 3);
    let (lines, stderr) = monitor(&log, &["--interval", "10"]);
    assert!(stderr.contains(":66: expected `,`"), "{stderr}");
    let reports: Vec<&Value> = lines.iter().filter(|l| l["type"] == "report").collect();
    assert_eq!(
        reports.len(),
        6,
        "5 intervals that ended before the last line (at +59 s), and the one it ends"
    );
    assert_eq!(reports[0]["interval"]["requests"], 30);
    assert_eq!(
        reports[1]["interval"]["requests"], 31,
        "the late line (at +17 s) counts in its own interval"
    );
    let counted: u64 = reports
        .iter()
        .map(|r| r["interval"]["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(counted as usize, sent, "every well-formed line");
    assert_eq!(
        reports[5]["to"],
        T0 + 60,
        "the last interval ends after its newest line"
    );
    assert_eq!(reports[0]["interval"]["top_sections"][0][0], "/api");
    assert_eq!(
        reports[0]["interval"]["status_classes"]["5xx"], 10,
        "one in each second"
    );
    assert!(
        lines.iter().all(|l| l["type"] == "report"),
        "3/s never averages more than 10/s"
    );
}

#[test]
fn high_traffic_alerts_and_recovers_with_the_exact_messages() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.csv");
    // 2/s, then 25/s from 30 s to 89 s, then 2/s until 400 s.
    csv_log(&log, 400, |s| if (30..90).contains(&s) { 25 } else { 2 });
    let (lines, _) = monitor(&log, &["--interval", "60", "--threshold", "10"]);
    let alerts: Vec<&Value> = lines.iter().filter(|l| l["type"] != "report").collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    // More than 1200 hits in 120 s: 2/s for the first 30 s (60, and the late line), then
    // 25/s: the 1201st comes in second 75, which ends with 61 + 46 × 25 = 1211.
    assert_eq!(alerts[0]["type"], "alert");
    assert_eq!(alerts[0]["hits"], 1211);
    assert_eq!(
        alerts[0]["message"],
        "High traffic generated an alert - hits = 1211, triggered at 2019-02-07T21:12:15Z"
    );
    assert_eq!(alerts[1]["type"], "recovered");
    assert!(alerts[1]["message"]
        .as_str()
        .unwrap()
        .starts_with("High traffic alert recovered - hits = "));
    let recovered_at = alerts[1]["at"].as_i64().unwrap();
    assert!(
        recovered_at > T0 + 90 && recovered_at < T0 + 210,
        "{recovered_at}"
    );
    let order: Vec<i64> = lines
        .iter()
        .map(|l| {
            if l["type"] == "report" {
                l["to"].as_i64().unwrap()
            } else {
                l["at"].as_i64().unwrap()
            }
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "in time order: {order:?}"
    );
}

#[test]
fn reports_after_a_recovery_are_not_flagged_while_no_request_comes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.csv");
    // 25/s for a minute: over 1200 in 2 minutes from 48 s, back to 1200 at 131 s. Then
    // nothing until one request at 400 s.
    let times = (0..60).flat_map(|s| [s; 25]).chain([400]);
    requests_at(&log, "/a", times.map(|s| T0 + s));
    let (lines, _) = monitor(&log, &["--interval", "60", "--threshold", "10"]);
    let at = |kind: &str| {
        lines
            .iter()
            .find(|l| l["type"] == kind)
            .and_then(|l| l["at"].as_i64())
            .map(|t| t - T0)
    };
    assert_eq!((at("alert"), at("recovered")), (Some(48), Some(131)));
    let flags: Vec<(i64, bool)> = lines
        .iter()
        .filter(|l| l["type"] == "report")
        .map(|l| (l["to"].as_i64().unwrap() - T0, l["alerting"] == true))
        .collect();
    // Alerting in an interval's last second: from 48 s up to 130 s.
    assert_eq!(
        flags,
        [
            (60, true),
            (120, true),
            (180, false),
            (240, false),
            (300, false),
            (360, false),
            (401, false)
        ]
    );
}

#[test]
fn a_fractional_threshold_alerts_and_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.csv");
    // 1 request every 2 s, then 1/s from 100 s: more than 60 in 2 minutes (0.5/s) at 110 s
    // (50 + 11), never more than 120 (1/s).
    let times = (0..100).step_by(2).chain(100..200);
    requests_at(&log, "/a", times.map(|s| T0 + s));
    let (lines, _) = monitor(&log, &["--threshold", "0.5"]);
    let alerts: Vec<&Value> = lines.iter().filter(|l| l["type"] == "alert").collect();
    assert_eq!(alerts.len(), 1, "{lines:?}");
    assert_eq!(
        (alerts[0]["at"].as_i64(), &alerts[0]["hits"]),
        (Some(T0 + 110), &Value::from(61))
    );
    let (lines, _) = monitor(&log, &["--threshold", "1"]);
    assert!(lines.iter().all(|l| l["type"] == "report"), "{lines:?}");

    for zero in ["0", "0.0", "0.008"] {
        let out = Command::new(env!("CARGO_BIN_EXE_banhammer"))
            .args(["monitor", "--log-format", "csv", "--replay", "--json"])
            .args(["--threshold", zero, "--log"])
            .arg(&log)
            .output()
            .unwrap();
        assert!(!out.status.success(), "--threshold {zero} was accepted");
        assert!(out.stdout.is_empty(), "nothing was monitored");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("--threshold {}", zero.trim_end_matches(".0")))
                && stderr.contains("at least 1/120"),
            "{stderr}"
        );
    }
}

/// Runs `banhammer monitor` with `args` under a 2 GB address-space limit, killed if it has not
/// finished after about 60 s; returns its stdout. A monitor that builds a report per interval
/// of a long gap runs out of that memory (or time) instead of taking the machine's.
fn bounded_monitor(args: &[&std::ffi::OsStr]) -> String {
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -v 2000000 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_banhammer"))
        .arg("monitor")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut waited = 0;
    while child.try_wait().unwrap().is_none() {
        if waited == 1200 {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("monitor did not finish within a minute");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += 1;
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `banhammer monitor --json` with `args` on input with a ten-year gap after `T0 + 12`: its
/// outputs, checked to be the two reports before the gap, the gap in one line, and the report
/// after it.
fn json_across_the_gap(args: &[&std::ffi::OsStr]) -> Vec<Value> {
    let json = bounded_monitor(&[args, &["--json".as_ref()]].concat());
    let lines: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["report", "report", "no_traffic", "report"],
        "{json}"
    );
    assert_eq!(
        (lines[2]["from"].as_i64(), lines[2]["to"].as_i64()),
        (Some(T0 + 20), Some(LATER - 7))
    );
    lines
}

/// Ten years and 7 s after `T0`: 2029-02-07T21:11:07Z.
const LATER: i64 = T0 + 315_619_207;

/// A CSV log with one request at `T0`, two at `T0 + 12`, then one ten years later.
fn gap_log(path: &Path) {
    requests_at(path, "/a/b", [T0, T0 + 12, T0 + 12, LATER]);
}

/// A CSV log (no header) of `GET target` requests from one client, one at each of `times`
/// (unix seconds), all answered 200.
fn requests_at(path: &Path, target: &str, times: impl IntoIterator<Item = i64>) {
    let mut text = String::new();
    for t in times {
        writeln!(
            text,
            "\"10.0.0.1\",\"-\",\"-\",{t},\"GET {target} HTTP/1.0\",200,10"
        )
        .unwrap();
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_ten_year_gap_in_a_log_is_one_line_not_a_report_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gap.csv");
    gap_log(&log);
    let common = [
        "--log".as_ref(),
        log.as_os_str(),
        "--log-format".as_ref(),
        "csv".as_ref(),
        "--replay".as_ref(),
    ];
    let plain = bounded_monitor(&[&common[..], &["--plain".as_ref()]].concat());
    let reports: Vec<&str> = plain.lines().filter(|l| l.starts_with("== ")).collect();
    assert_eq!(
        reports,
        [
            "== 2019-02-07T21:11:00Z → 2019-02-07T21:11:10Z (10 s)",
            "== 2019-02-07T21:11:10Z → 2019-02-07T21:11:20Z (10 s)",
            "== 2029-02-07T21:11:00Z → 2029-02-07T21:11:08Z (8 s)",
        ],
        "{plain}"
    );
    let quiet: Vec<&str> = plain
        .lines()
        .filter(|l| l.starts_with("no traffic"))
        .collect();
    assert_eq!(
        quiet,
        ["no traffic from 2019-02-07T21:11:20Z to 2029-02-07T21:11:00Z"],
        "{plain}"
    );

    let lines = json_across_the_gap(&common);
    assert_eq!(
        lines[2]["message"],
        "no traffic from 2019-02-07T21:11:20Z to 2029-02-07T21:11:00Z"
    );
    assert_eq!(lines[3]["total"]["requests"], 4, "every request counted");
}

/// A pcap file with one HTTP request per `(unix seconds, source port)`, each a lone data
/// segment of a connection already open (the monitor picks those up).
#[cfg(feature = "capture")]
fn pcap_of_requests(path: &Path, requests: &[(i64, u16)]) {
    let mut t = trace::Trace::new(requests.first().map_or(T0, |r| r.0));
    for &(at, port) in requests {
        trace::Conn::already_open(&format!("10.0.0.1:{port}"), "10.0.0.2:80")
            .send(t.at(at), b"GET /a/b HTTP/1.1\r\nHost: example.com\r\n\r\n");
    }
    t.write(path, None);
}

#[cfg(feature = "capture")]
#[test]
fn a_pcap_whose_clock_jumps_ten_years_is_one_line_not_a_report_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("jump.pcap");
    pcap_of_requests(&pcap, &[(T0, 40_000), (T0 + 12, 40_001), (LATER, 40_002)]);
    let lines = json_across_the_gap(&["--pcap".as_ref(), pcap.as_os_str()]);
    assert_eq!(lines[3]["total"]["requests"], 3);
    assert_eq!(lines[3]["total"]["top_sections"][0][0], "example.com/a");
}

#[test]
fn a_path_with_control_characters_reaches_no_view_raw() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // A server that logs the request's bytes as they came (a custom format, the CSV export):
    // a terminal title escape, a bell, a C1 CSI and a line separator in the path.
    std::fs::write(
        &log,
        "10.0.0.1 - - [07/Feb/2019:21:11:00 +0000] \
         \"GET /\u{1b}]0;pwned\u{7}\u{9b}2J\u{2028}==forged/x HTTP/1.1\" 200 10 \"-\" \"-\"\n",
    )
    .unwrap();
    for view in ["--plain", "--json"] {
        let out = Command::new(env!("CARGO_BIN_EXE_banhammer"))
            .args(["monitor", "--replay", view, "--log"])
            .arg(&log)
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.lines()
                .all(|l| !l.chars().any(|c| c.is_control() || c == '\u{2028}')),
            "{text:?}"
        );
        let section = "/\\u{1b}]0;pwned\\u{7}\\u{9b}2J\\u{2028}==forged";
        if view == "--json" {
            let report: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
            assert_eq!(report["interval"]["top_sections"][0][0], section);
        } else {
            assert!(text.contains(section), "{text}");
        }
    }
}

/// Runs `banhammer monitor` as a TUI on a pseudo-terminal (util-linux `script`, 100×30),
/// presses `q` once `ready` is on screen, and returns every byte it wrote to the terminal.
fn tui_on_a_terminal(dir: &Path, args: &str, ready: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};

    let bin = env!("CARGO_BIN_EXE_banhammer");
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("stty cols 100 rows 30; '{bin}' monitor {args}"))
        .arg("/dev/null")
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux script");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut out = child.stdout.take().unwrap();
    let reader = {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = out.read(&mut buf) {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    banhammer_testkit::wait::until("the TUI drew what it waits for", || {
        contains(&seen.lock().unwrap(), ready)
    });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"q").unwrap();
    stdin.flush().unwrap();
    banhammer_testkit::wait::until("the monitor quit on q", || {
        child.try_wait().unwrap().is_some()
    });
    drop(stdin);
    reader.join().unwrap();
    let bytes = seen.lock().unwrap().clone();
    bytes
}

// Issue 16: a malformed line's report, written to stderr under the TUI, was drawn over its
// panels and left there. Now it is in the status line while the TUI runs, and printed once
// the terminal is given back (after the switch back from the alternate screen).
#[test]
fn a_malformed_line_under_the_tui_is_kept_off_the_screen_and_printed_after_exit() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = String::new();
    for s in 0..30 {
        writeln!(
            log,
            "10.0.0.{} - - [07/Feb/2019:21:11:{s:02} +0000] \"GET /api/user HTTP/1.1\" 200 2048 \"-\" \"curl\"",
            s % 3 + 1
        )
        .unwrap();
        if s == 12 {
            log.push_str("this is not a log line\n");
        }
    }
    std::fs::write(dir.path().join("access.log"), log).unwrap();
    let report = b"access.log:14: expected `[` before the time at column 13";
    let out = tui_on_a_terminal(
        dir.path(),
        "--log access.log --replay --log-format combined",
        &report[..],
    );
    let leave = b"\x1b[?1049l";
    let at = out
        .windows(leave.len())
        .position(|w| w == leave)
        .expect("the TUI left the alternate screen");
    // As a line of its own: ended by `\n` (raw mode, under the TUI) or `\r\n` (after it);
    // drawn in the status line, it is followed by the line's padding or escape codes.
    let lines = |hay: &[u8]| {
        hay.windows(report.len() + 1)
            .filter(|w| w.starts_with(report) && matches!(w[report.len()], b'\n' | b'\r'))
            .count()
    };
    assert_eq!(lines(&out[..at]), 0, "said under the TUI");
    assert_eq!(lines(&out[at..]), 1, "not printed after exit");
}
