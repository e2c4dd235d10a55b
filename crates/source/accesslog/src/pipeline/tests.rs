//! The pipeline on real files, read both ways the front ends read them: whole (`input::open`
//! and `BoundedLines`, as replays do) and followed (`Follower`, as `watch` does).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use banhammer_config::Config;
use banhammer_core::{Action, NamedNoop, Ruleset, Timestamp};

use super::*;
use crate::{input, BoundedLines, Follower};

const HEADER: &str =
    "\"remotehost\",\"rfc931\",\"authuser\",\"date\",\"request\",\"status\",\"bytes\"";

fn line(ip: &str, t: i64, path: &str) -> String {
    format!("\"{ip}\",\"-\",\"-\",{t},\"GET {path} HTTP/1.1\",200,10")
}

fn write(path: &Path, lines: &[&[u8]]) {
    let mut f = std::fs::File::create(path).unwrap();
    for l in lines {
        f.write_all(l).unwrap();
        f.write_all(b"\n").unwrap();
    }
}

/// `request` for every line, `login` also for `/login`; clients in 10.0.0.0/8 are ignored.
fn config() -> (Config, Ruleset) {
    let config = Config::parse(
        "[accesslog]\nformat = \"csv\"\nignore = [\"10.0.0.0/8\"]\n\
         [[accesslog.match]]\nmetric = \"login\"\npath = \"/login\"\n\
         [metrics.request]\n[[metrics.request.thresholds]]\nlimit = 100\nwindow = 10\n\
         actions = [\"block_local\"]\naction_duration = 5\n\
         [metrics.login]\n[[metrics.login.thresholds]]\nlimit = 100\nwindow = 10\n\
         actions = [\"block_local\"]\naction_duration = 5\n",
        "test.toml",
    )
    .unwrap();
    let noop = |name: &str| -> Arc<dyn Action> { Arc::new(NamedNoop(name.to_owned())) };
    let rules = config.ruleset(&noop).unwrap();
    (config, rules)
}

fn csv() -> LogFormat {
    LogFormat::from_setting("csv").unwrap()
}

/// What a replay gets from `path`: each counted line's token and events, and the reports.
fn replay(
    pipeline: &mut LinePipeline,
    map: &LineEvents<'_>,
    path: &Path,
) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let mut lines = BoundedLines::new(input::open(path).unwrap().reader, 200);
    let (mut counted, mut reports) = (Vec::new(), Vec::new());
    let mut number = 0;
    while let Some(l) = lines.next_line().unwrap() {
        number += 1;
        if let Some(t) = pipeline.events(number, l, map, |m| reports.push(m.to_string())) {
            assert_eq!(t.time(), Timestamp::from_unix(1000));
            let metrics = t.events().map(|e| e.metric.to_owned()).collect();
            counted.push((t.token().to_owned(), metrics));
        }
    }
    (counted, reports)
}

#[test]
fn a_replayed_file_gives_events_and_counts_what_it_skips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.csv");
    let long = line("1.2.3.4", 1000, &"/a".repeat(200));
    write(
        &path,
        &[
            HEADER.as_bytes(),
            line("1.2.3.4", 1000, "/").as_bytes(),
            b"this is not a line",
            line("10.1.2.3", 1000, "/").as_bytes(),
            long.as_bytes(),
            b"\xff\xfe",
            line("5.6.7.8", 1000, "/login").as_bytes(),
        ],
    );
    let (config, rules) = config();
    let map = LineEvents::new(&config.accesslog, &rules);
    let origin = path.display().to_string();
    let mut pipeline = LinePipeline::new(csv(), origin.clone(), ReportPolicy::first(2));
    let (counted, reports) = replay(&mut pipeline, &map, &path);
    assert_eq!(
        counted,
        [
            ("1.2.3.4".to_owned(), vec!["request".to_owned()]),
            (
                "5.6.7.8".to_owned(),
                vec!["request".to_owned(), "login".to_owned()]
            ),
        ]
    );
    assert_eq!(
        reports,
        [
            format!("{origin}:3: expected `,` before the ident at column 19"),
            format!("{origin}:5: line longer than 16384 bytes"),
        ],
        "the header is not malformed; the third malformed line is only counted"
    );
    assert_eq!(pipeline.lines(), 7);
    assert_eq!(pipeline.malformed(), 3);
    assert_eq!(pipeline.unreported(), 1);
    assert_eq!(pipeline.ignored(), 1);
}

#[test]
fn counts_and_the_report_limit_go_on_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    write(&a, &[b"junk", line("1.2.3.4", 1000, "/").as_bytes()]);
    write(&b, &[b"junk", b"junk"]);
    let (config, rules) = config();
    let map = LineEvents::new(&config.accesslog, &rules);
    let mut pipeline = LinePipeline::new(csv(), "a", ReportPolicy::first(2));
    let (_, first) = replay(&mut pipeline, &map, &a);
    pipeline.set_origin("b");
    let (_, second) = replay(&mut pipeline, &map, &b);
    assert_eq!(first, ["a:1: expected `,` before the ident at column 5"]);
    assert_eq!(second, ["b:1: expected `,` before the ident at column 5"]);
    assert_eq!((pipeline.lines(), pipeline.malformed()), (4, 3));
    assert_eq!(pipeline.unreported(), 1);
}

#[test]
fn a_followed_file_reports_the_first_lines_then_every_nth() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.csv");
    let good = line("1.2.3.4", 1000, "/");
    let mut lines: Vec<&[u8]> = vec![b"junk"; 7];
    lines.insert(2, good.as_bytes());
    write(&path, &lines);
    let mut follower = Follower::new(&path, 200);
    let mut read = Vec::new();
    follower.poll(&mut read, 1 << 20).unwrap();
    let mut pipeline = LinePipeline::new(csv(), "f", ReportPolicy::first(1).then_every(3));
    let mut reports = Vec::new();
    let mut parsed = Vec::new();
    for l in &read {
        let (number, l) = l.numbered();
        let report = |n: &Note<'_>| match n {
            Note::Malformed(m) => reports.push((m.count, m.number)),
            other => panic!("{other}"),
        };
        if let Some(p) = pipeline.parse(number, l, report) {
            parsed.push(p.client.to_string());
        }
    }
    assert_eq!(parsed, ["1.2.3.4"]);
    // Malformed lines 1, 3 and 6 are lines 1, 4 and 7 of the file (line 3 is good).
    assert_eq!(reports, [(1, 1), (3, 4), (6, 7)]);
    assert_eq!((pipeline.malformed(), pipeline.unreported()), (7, 4));
}

#[test]
fn empty_lines_and_comments_are_skipped_not_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.csv");
    write(
        &path,
        &[
            b"# exported 2019-02-07",
            HEADER.as_bytes(),
            b"",
            b"   ",
            line("1.2.3.4", 1000, "/").as_bytes(),
            b"#Fields: remotehost date request",
            b"junk",
        ],
    );
    let (config, rules) = config();
    let map = LineEvents::new(&config.accesslog, &rules);
    let mut pipeline = LinePipeline::new(csv(), "a", ReportPolicy::first(10));
    let (counted, reports) = replay(&mut pipeline, &map, &path);
    assert_eq!(counted.len(), 1);
    assert_eq!(reports, ["a:7: expected `,` before the ident at column 5"]);
    assert_eq!(
        (pipeline.lines(), pipeline.skipped(), pipeline.malformed()),
        (7, 5, 1)
    );
}

#[test]
fn an_unconfigured_format_is_chosen_by_the_first_line() {
    let (config, rules) = config();
    let map = LineEvents::new(&config.accesslog, &rules);
    let run = |lines: &[&[u8]]| {
        let mut pipeline =
            LinePipeline::new(LogFormat::Combined, "f", ReportPolicy::first(10)).detecting_format();
        let mut notes = Vec::new();
        let mut tokens = Vec::new();
        for (n, l) in lines.iter().enumerate() {
            let counted = pipeline.events(n as u64 + 1, BoundedLine::Line(l), &map, |note| {
                notes.push(note.to_string());
            });
            tokens.extend(counted.map(|t| t.token().to_owned()));
        }
        (pipeline.format().name(), notes, tokens)
    };
    let csv_line = line("1.2.3.4", 1000, "/");
    assert_eq!(
        run(&[b"", b"# hi", HEADER.as_bytes(), csv_line.as_bytes()]),
        (
            "csv",
            vec!["f:3: a CSV header: reading the log as csv".to_owned()],
            vec!["1.2.3.4".to_owned()]
        )
    );
    let combined_line = br#"5.6.7.8 - - [01/Jan/2019:00:00:00 +0000] "GET / HTTP/1.1" 200 1"#;
    let (format, notes, tokens) = run(&[combined_line, HEADER.as_bytes()]);
    assert_eq!(format, "combined");
    assert_eq!(
        notes,
        [
            "f:1: no CSV header: reading the log as combined",
            "f:2: `\"remotehost\",\"rfc931\",\"authuser\",\"date\",…` is not an IP \
             address or host name (column 1)"
        ],
        "chosen once, from the first line"
    );
    assert_eq!(tokens, ["5.6.7.8"]);
}

#[test]
fn clients_become_tokens_mapped_addresses_as_ipv4_and_names_in_lower_case() {
    let (config, rules) = config();
    let map = LineEvents::new(&config.accesslog, &rules);
    let mut pipeline = LinePipeline::new(csv(), "f", ReportPolicy::first(10));
    let mut tokens = Vec::new();
    for client in [
        "::ffff:203.0.113.9",
        "::ffff:10.1.2.3",
        "In24.INETNEBR.com",
        "10.1.2.3",
    ] {
        let l = line(client, 1000, "/");
        let counted = pipeline.events(1, BoundedLine::Line(l.as_bytes()), &map, |n| {
            panic!("{n}");
        });
        tokens.push(counted.map(|t| t.token().to_owned()));
    }
    assert_eq!(
        tokens,
        [
            Some("203.0.113.9".to_owned()),
            None,
            Some("in24.inetnebr.com".to_owned()),
            None
        ],
        "10.0.0.0/8 is ignored, also written as IPv4-mapped; a name is never ignored"
    );
    assert_eq!(pipeline.ignored(), 2);
}

#[test]
fn late_lines_are_counted_reported_and_given_back() {
    let mut pipeline = LinePipeline::new(csv(), "f", ReportPolicy::first(1));
    let mut reorder = Reorder::new(banhammer_core::Seconds::new(60), 100);
    let mut notes = Vec::new();
    let mut order = |pipeline: &mut LinePipeline, number: u64, t: i64| {
        pipeline.order(&mut reorder, number, Timestamp::from_unix(t), number, |n| {
            notes.push(n.to_string());
        })
    };
    assert_eq!(order(&mut pipeline, 1, 1000), None);
    assert_eq!(order(&mut pipeline, 2, 940), None, "60 s behind: in time");
    assert_eq!(order(&mut pipeline, 3, 939), Some(3));
    assert_eq!(order(&mut pipeline, 4, 100), Some(4));
    assert_eq!(
        notes,
        [
            "f:3: late line: logged at 939, 61s before the newest line (max_delay is 60s); \
          counted out of order"
        ],
        "the first in full, then only counted"
    );
    assert_eq!((pipeline.late(), pipeline.unreported_late()), (2, 1));
}

#[test]
fn metrics_that_no_line_feeds_are_named() {
    let rules_of = |text: &str| {
        let config = Config::parse(text, "t.toml").unwrap();
        let noop = |name: &str| -> Arc<dyn Action> { Arc::new(NamedNoop(name.to_owned())) };
        let rules = config.ruleset(&noop).unwrap();
        (config, rules)
    };
    let (unfed, rules) = rules_of(
        "[metrics.login_failed]\n[metrics.request]\n[metrics.\"detect:*\"]\n[metrics.other]\n\
         [[accesslog.match]]\nmetric = \"detect:login\"\npath = \"/login\"\n",
    );
    let map = LineEvents::new(&unfed.accesslog, &rules);
    assert_eq!(map.unfed(&rules), ["login_failed", "other"]);
    let (fed, rules) = config();
    assert!(LineEvents::new(&fed.accesslog, &rules)
        .unfed(&rules)
        .is_empty());
    let (other, rules) = rules_of("[accesslog]\nrequest_metric = \"hit\"\n[metrics.request]\n");
    assert_eq!(
        LineEvents::new(&other.accesslog, &rules).unfed(&rules),
        ["request"]
    );
}
