//! The alert logic (under/over/under, staying over or under, the exact boundary, recovery
//! with no traffic), intervals and sections, with time injected.

use std::net::IpAddr;

use super::*;
use crate::Reply;

const T0: i64 = 1_700_000_000;

fn ts(s: i64) -> Timestamp {
    Timestamp::from_unix(T0 + s)
}

/// An alert at more than 1 request/s over 10 s (more than 10 hits), reports every 10 s.
fn app() -> App {
    App::new(
        MonitorConfig {
            interval: 10,
            threshold: PerSecond::whole(1),
            window: 10,
            top: 5,
        },
        ts(0),
    )
}

fn hit(at: i64, path: &str) -> Observation {
    Observation::Request(Hit {
        time: ts(at),
        client: IpAddr::from([10, 0, 0, (at % 7) as u8]),
        host: Some("my.site.com".to_owned()),
        method: Some("GET".to_owned()),
        path: Some(path.to_owned()),
    })
}

/// `n` hits in second `at`.
fn hits(app: &mut App, at: i64, n: usize) {
    for _ in 0..n {
        app.observe(hit(at, "/pages/create"));
    }
}

fn alerts(out: &[Output]) -> Vec<(AlertKind, u64, i64)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Alert(a) => Some((a.kind, a.hits, a.at.as_unix() - T0)),
            Output::Report(_) | Output::NoTraffic(_) => None,
        })
        .collect()
}

#[test]
fn staying_under_never_alerts() {
    let mut a = app();
    let mut all = Vec::new();
    for s in 0..100 {
        hits(&mut a, s, 1); // 10 hits in any 10 s: not more than 10
        all.extend(a.advance(ts(s)));
    }
    assert!(alerts(&all).is_empty());
    assert!(!a.alerting());
}

#[test]
fn the_boundary_is_exceeding_not_reaching() {
    let mut a = app();
    hits(&mut a, 0, 10);
    assert!(
        alerts(&a.advance(ts(0))).is_empty(),
        "10 hits in 10 s average exactly 1/s"
    );
    hits(&mut a, 0, 1);
    assert_eq!(alerts(&a.advance(ts(0))), [(AlertKind::Triggered, 11, 0)]);
    assert!(a.alerting());
}

#[test]
fn under_over_under() {
    let mut a = app();
    let mut all = Vec::new();
    for s in 0..30 {
        // 1/s until 10, 3/s from 10 to 19, then 1/s again.
        hits(&mut a, s, if (10..20).contains(&s) { 3 } else { 1 });
        all.extend(a.advance(ts(s)));
    }
    all.extend(a.advance(ts(60)));
    // At 10 the window (0, 10] holds 9 hits, then the second of second 10's makes 11 > 10:
    // alert, told with the 12 of the whole second. At 29, before its own hit, (19, 29] holds
    // seconds 20..28 at 1/s: 9, back under.
    assert_eq!(
        alerts(&all),
        [
            (AlertKind::Triggered, 12, 10),
            (AlertKind::Recovered, 9, 29)
        ]
    );
    assert!(!a.alerting());
}

#[test]
fn staying_over_alerts_once() {
    let mut a = app();
    let mut all = Vec::new();
    for s in 0..60 {
        hits(&mut a, s, 2);
        all.extend(a.advance(ts(s)));
    }
    // (−5, 5] holds seconds 0..4 (10 hits), and second 5's first hit is the 11th: the alert
    // fires then, and says the 12 hits at the end of that second.
    assert_eq!(alerts(&all), [(AlertKind::Triggered, 12, 5)]);
    assert!(a.alerting());
}

#[test]
fn recovery_needs_no_traffic() {
    let mut a = app();
    hits(&mut a, 0, 20);
    assert_eq!(alerts(&a.advance(ts(0))), [(AlertKind::Triggered, 20, 0)]);
    // Nothing more arrives; the clock goes on. At 10 the window (0, 10] is empty.
    assert!(alerts(&a.advance(ts(9))).is_empty());
    let out = a.advance(ts(10));
    assert_eq!(alerts(&out), [(AlertKind::Recovered, 0, 10)]);
    assert_eq!(a.alerts().len(), 2, "the history keeps both");
}

#[test]
fn late_observations_wait_for_the_clock_and_count_in_order() {
    let mut a = app();
    // Arriving out of order, all before the clock reaches them.
    for s in [3, 1, 2, 1] {
        a.observe(hit(s, "/a/x"));
    }
    let out = a.advance(ts(10));
    let Some(Output::Report(r)) = out.iter().find(|o| matches!(o, Output::Report(_))) else {
        panic!("no report")
    };
    assert_eq!(r.interval.requests, 4);
    assert_eq!(a.late(), 0);
}

#[test]
fn reports_come_every_interval_even_without_traffic() {
    let mut a = app();
    hits(&mut a, 5, 3);
    a.observe(Observation::Response(Reply {
        time: ts(5),
        status: 503,
        bytes: Some(100),
    }));
    a.observe(Observation::Response(Reply {
        time: ts(6),
        status: 200,
        bytes: Some(50),
    }));
    let out = a.advance(ts(35));
    let reports: Vec<&Report> = out
        .iter()
        .filter_map(|o| {
            if let Output::Report(r) = o {
                Some(&**r)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[0].interval.requests, 3);
    assert_eq!(
        reports[0].interval.sections.top(5),
        [("my.site.com/pages".to_owned(), 3)]
    );
    assert!((reports[0].interval.error_rate() - 0.5).abs() < 1e-9);
    assert_eq!(reports[0].interval.bytes, 150);
    assert_eq!(reports[1].interval.requests, 0);
    assert_eq!(reports[2].total.requests, 3);
    assert_eq!((reports[2].from, reports[2].to), (ts(20), ts(30)));
}

#[test]
fn the_sparkline_counts_each_of_the_last_seconds() {
    let mut a = app();
    hits(&mut a, 1, 2);
    hits(&mut a, 3, 5);
    a.advance(ts(4));
    assert_eq!(a.per_second(5), [0, 2, 0, 5, 0]);
}

#[test]
fn finish_counts_what_waits_and_reports_the_interval_in_progress() {
    let mut a = app();
    hits(&mut a, 3, 2);
    hits(&mut a, 14, 4);
    hits(&mut a, 12, 1); // arrives late, still waiting for the clock
    let first = a.advance(ts(11));
    assert_eq!(first.len(), 1, "only [0, 10) has ended");
    let out = a.finish();
    let [Output::Report(r)] = out.as_slice() else {
        panic!("one cut-short report: {out:?}")
    };
    assert_eq!((r.from, r.to), (ts(10), ts(15)), "up to the newest second");
    assert_eq!(r.interval.requests, 5);
    assert_eq!(r.total.requests, 7);
    assert!(a.finish().is_empty(), "nothing left to report");
}

/// Ten years, in seconds: far more intervals than memory could hold reports for.
const DECADE: i64 = 315_569_520;

#[test]
fn a_long_gap_is_one_no_traffic_output_and_the_recovery_keeps_its_second() {
    let mut a = app();
    hits(&mut a, 0, 20);
    hits(&mut a, 13, 1);
    hits(&mut a, DECADE + 3, 1);
    let out = a.advance(ts(DECADE + 3));
    let shown: Vec<String> = out
        .iter()
        .map(|o| match o {
            Output::Report(r) => format!(
                "report {}..{} {}",
                r.from.as_unix() - T0,
                r.to.as_unix() - T0,
                r.interval.requests
            ),
            Output::Alert(a) => format!("{:?} {} at {}", a.kind, a.hits, a.at.as_unix() - T0),
            Output::NoTraffic(q) => format!(
                "no traffic {}..{}",
                q.from.as_unix() - T0,
                q.to.as_unix() - T0
            ),
        })
        .collect();
    let end = DECADE / 10 * 10;
    assert_eq!(
        shown,
        [
            "Triggered 20 at 0".to_owned(),
            "report 0..10 20".to_owned(),
            "Recovered 0 at 10".to_owned(),
            "report 10..20 1".to_owned(),
            format!("no traffic 20..{end}"),
        ]
    );
    assert_eq!(
        a.no_traffic(),
        Some(NoTraffic {
            from: ts(20),
            to: ts(end)
        })
    );
    let last = a.finish();
    let [Output::Report(r)] = last.as_slice() else {
        panic!("one report after the gap: {last:?}")
    };
    assert_eq!((r.from, r.to), (ts(end), ts(DECADE + 4)));
    assert_eq!(r.total.requests, 22);
}

#[test]
fn a_few_empty_intervals_are_still_reported_one_by_one() {
    let mut a = app();
    hits(&mut a, 0, 1);
    hits(&mut a, 75, 1);
    let out = a.advance(ts(75));
    let reports = out
        .iter()
        .filter(|o| matches!(o, Output::Report(_)))
        .count();
    assert_eq!(reports, 7, "[0, 10) and six empty intervals up to 70");
    assert!(a.no_traffic().is_none());
}

/// The reports in order, one character each: `+` alerting, `-` not (the test app's reports
/// are the 10 s intervals from `T0`).
fn flags(out: &[Output]) -> String {
    out.iter()
        .filter_map(|o| match o {
            Output::Report(r) => Some(if r.alerting { '+' } else { '-' }),
            Output::Alert(_) | Output::NoTraffic(_) => None,
        })
        .collect()
}

/// A fresh app given `(second, hits)` and advanced to `to`: the app and its outputs.
fn after(seconds: &[(i64, usize)], to: i64) -> (App, Vec<Output>) {
    let mut a = app();
    for &(at, n) in seconds {
        hits(&mut a, at, n);
    }
    let out = a.advance(ts(to));
    (a, out)
}

#[test]
fn reports_after_the_recovery_are_not_flagged_though_nothing_came() {
    // One advance crosses the trigger (15), the recovery (25) and four interval ends.
    let (_, out) = after(&[(15, 20), (55, 1)], 55);
    assert_eq!(
        alerts(&out)
            .iter()
            .map(|&(k, _, at)| (k, at))
            .collect::<Vec<_>>(),
        [(AlertKind::Triggered, 15), (AlertKind::Recovered, 25)]
    );
    assert_eq!(
        flags(&out),
        "-+---",
        "on in an interval's last second (19 of [10, 20)), and only then"
    );
    // A recovery in an interval's first second: the interval before ends alerting.
    let (mut a, out) = after(&[(10, 20)], 45);
    assert_eq!(
        alerts(&out).last().map(|&(k, _, at)| (k, at)),
        Some((AlertKind::Recovered, 20))
    );
    hits(&mut a, 60, 20);
    let out = [out, a.advance(ts(80))].concat();
    assert_eq!(flags(&out), "-+----+-", "[10, 20) and [60, 70) up to 80");
}

#[test]
fn the_alert_tells_the_hits_of_its_whole_second() {
    // 1,000 requests in one second over a limit of 10: the 11th crosses it, the second ends
    // with 1,000 in the window.
    let (a, out) = after(&[(3, 1000), (4, 5)], 4);
    assert_eq!(alerts(&out), [(AlertKind::Triggered, 1000, 3)]);
    assert_eq!(a.alerts().len(), 1);
    // Told at the end of an advance, when the clock stops inside that second.
    let (_, out) = after(&[(3, 1000)], 3);
    assert_eq!(alerts(&out), [(AlertKind::Triggered, 1000, 3)]);
    // Earlier seconds still in the window count too; later seconds do not.
    let (_, out) = after(&[(3, 20), (2, 4), (9, 7)], 20);
    assert_eq!(alerts(&out)[0], (AlertKind::Triggered, 24, 3));
}

#[test]
fn a_recovery_met_while_too_many_observations_wait_is_still_told() {
    let (mut a, out) = after(&[(0, 20)], 0);
    assert_eq!(alerts(&out), [(AlertKind::Triggered, 20, 0)]);
    // More than `MAX_PENDING` wait: the oldest is counted at once, and its second (100) is
    // past the recovery (10).
    hits(&mut a, 100, MAX_PENDING + 1);
    let out = a.advance(ts(100));
    assert_eq!(
        alerts(&out),
        [
            (AlertKind::Recovered, 0, 10),
            (AlertKind::Triggered, MAX_PENDING as u64 + 1, 100)
        ]
    );
}
