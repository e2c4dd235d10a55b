//! Drives `banhammer monitor` on access logs in event time: reports, the alert and its
//! recovery, exactly worded, in order.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

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
    // More than 1200 hits in 120 s: 2/s for the first 30 s (60), then 25/s.
    assert_eq!(alerts[0]["type"], "alert");
    assert_eq!(alerts[0]["hits"], 1201);
    assert_eq!(
        alerts[0]["message"],
        "High traffic generated an alert - hits = 1201, triggered at 2019-02-07T21:12:15Z"
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
