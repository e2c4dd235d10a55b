//! The watch loop on a real file, a real SQLite state and real record files, with the
//! "wall" clock injected so that time-driven UNBANs are checked without sleeping.

use std::fs::OpenOptions;
use std::io::Write;

use super::*;

struct Setup {
    dir: tempfile::TempDir,
    log: PathBuf,
    csv: PathBuf,
    config: Config,
    format: LogFormat,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.csv");
    let csv = dir.path().join("action_record.csv");
    let text = format!(
        "[accesslog]\nformat = \"csv\"\n[watch]\nstate = \"{}\"\ncsv = \"{}\"\n\
         [metrics.request]\n[[metrics.request.thresholds]]\nlimit = 2\nwindow = 10\n\
         actions = [\"block_local\"]\naction_duration = 5\n",
        dir.path().join("state.sqlite").display(),
        csv.display()
    );
    let config = Config::parse(&text, "test.toml").unwrap();
    let format = LogFormat::from_setting("csv").unwrap();
    Setup {
        dir,
        log,
        csv,
        config,
        format,
    }
}

fn append(path: &Path, lines: &[(&str, i64)]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for (ip, t) in lines {
        writeln!(f, "\"{ip}\",\"-\",\"-\",{t},\"GET / HTTP/1.1\",200,10").unwrap();
    }
}

fn options(s: &Setup) -> WatchOptions {
    WatchOptions {
        file: s.log.clone(),
        clock: ClockKind::Wall,
        max_delay: None,
        from_start: true,
        state: None,
        csv: None,
        jsonl: None,
        metrics_listen: None,
        http: None,
    }
}

fn records(s: &Setup) -> Vec<String> {
    std::fs::read_to_string(&s.csv)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn unbans_come_on_time_from_the_clock_without_new_lines() {
    let s = setup();
    let clock = ManualClock::new(Timestamp::from_unix(1000));
    let mut w = Watcher::new(
        s.config.clone(),
        s.format.clone(),
        &options(&s),
        clock.clone(),
        None,
    )
    .unwrap();
    append(&s.log, &[("1.2.3.4", 1000), ("1.2.3.4", 1000)]);
    w.step().unwrap();
    assert_eq!(records(&s), ["1000,BAN,1.2.3.4"]);
    clock.set(Timestamp::from_unix(1004));
    w.step().unwrap();
    assert_eq!(records(&s).len(), 1);
    clock.set(Timestamp::from_unix(1100));
    w.step().unwrap();
    assert_eq!(
        records(&s),
        ["1000,BAN,1.2.3.4", "1005,UNBAN,1.2.3.4"],
        "at until, not at the tick"
    );
}

#[test]
fn a_restart_keeps_the_ban_and_the_place_in_the_file() {
    let s = setup();
    let clock = ManualClock::new(Timestamp::from_unix(1000));
    {
        let mut w = Watcher::new(
            s.config.clone(),
            s.format.clone(),
            &options(&s),
            clock.clone(),
            None,
        )
        .unwrap();
        append(
            &s.log,
            &[("1.2.3.4", 1000), ("1.2.3.4", 1000), ("5.6.7.8", 1000)],
        );
        w.step().unwrap();
    }
    assert_eq!(records(&s), ["1000,BAN,1.2.3.4"]);
    // Restarted: the ban is still on, 5.6.7.8's earlier line still counts (its count was saved
    // with the read position) and is not read again: one more line reaches the limit of 2
    // with a measure of 2, not 3.
    clock.set(Timestamp::from_unix(1002));
    let mut w = Watcher::new(
        s.config.clone(),
        s.format.clone(),
        &options(&s),
        clock.clone(),
        None,
    )
    .unwrap();
    assert!(w.engine.is_banned("1.2.3.4"));
    append(&s.log, &[("5.6.7.8", 1002)]);
    w.step().unwrap();
    assert_eq!(records(&s), ["1000,BAN,1.2.3.4", "1002,BAN,5.6.7.8"]);
    assert_eq!(w.engine.ban("5.6.7.8").map(|b| b.value), Some(2));
    clock.set(Timestamp::from_unix(1010));
    w.step().unwrap();
    assert_eq!(
        records(&s),
        [
            "1000,BAN,1.2.3.4",
            "1002,BAN,5.6.7.8",
            "1005,UNBAN,1.2.3.4",
            "1007,UNBAN,5.6.7.8"
        ]
    );
}

#[test]
fn a_ban_that_ended_while_stopped_is_closed_at_its_until() {
    let s = setup();
    let clock = ManualClock::new(Timestamp::from_unix(1000));
    {
        let mut w = Watcher::new(
            s.config.clone(),
            s.format.clone(),
            &options(&s),
            clock.clone(),
            None,
        )
        .unwrap();
        append(&s.log, &[("1.2.3.4", 1000), ("1.2.3.4", 1000)]);
        w.step().unwrap();
    }
    clock.set(Timestamp::from_unix(5000));
    let w = Watcher::new(
        s.config.clone(),
        s.format.clone(),
        &options(&s),
        clock,
        None,
    )
    .unwrap();
    assert!(!w.engine.is_banned("1.2.3.4"));
    assert_eq!(records(&s), ["1000,BAN,1.2.3.4", "1005,UNBAN,1.2.3.4"]);
    drop(s.dir);
}
