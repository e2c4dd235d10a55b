//! Plain-text and JSON renderings of reports and alerts.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use banhammer_core::Timestamp;
use serde_json::json;

use crate::app::{Alert, AlertKind, App, NoTraffic, Output, Report};
use crate::stats::Stats;

/// A timestamp as RFC 3339 in UTC (`2019-02-07T21:11:00Z`).
pub(crate) fn time(t: Timestamp) -> String {
    let secs = u64::try_from(t.as_unix()).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// The alert line, exactly as the original brief words it.
pub fn alert_line(a: &Alert) -> String {
    match a.kind {
        AlertKind::Triggered => {
            format!(
                "High traffic generated an alert - hits = {}, triggered at {}",
                a.hits,
                time(a.at)
            )
        }
        AlertKind::Recovered => {
            format!(
                "High traffic alert recovered - hits = {}, recovered at {}",
                a.hits,
                time(a.at)
            )
        }
    }
}

/// The line for a run of empty intervals: `no traffic from … to …`.
pub fn no_traffic_line(q: &NoTraffic) -> String {
    format!("no traffic from {} to {}", time(q.from), time(q.to))
}

/// A byte count for people, in SI units (`512 B`, `11.6 kB`), the same in every view.
pub(crate) fn human_bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().si().to_string()
}

fn list(items: &[(String, u64)]) -> String {
    if items.is_empty() {
        return "-".to_owned();
    }
    items
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join("  ")
}

fn summary(out: &mut String, label: &str, s: &Stats, seconds: u64, top: usize) {
    let _ = writeln!(
        out,
        "{label:<9}{} requests ({:.1}/s), {}, errors {:.1}%, {} clients{}",
        s.requests,
        s.rate(seconds),
        human_bytes(s.bytes),
        s.error_rate() * 100.0,
        s.clients.distinct(),
        if s.clients.saturated() { "+" } else { "" },
    );
    let classes = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];
    let statuses: Vec<(String, u64)> = classes
        .iter()
        .zip(s.statuses)
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| ((*c).to_owned(), n))
        .collect();
    let _ = writeln!(out, "  methods  {}", list(&s.methods.top(top)));
    let _ = writeln!(out, "  status   {}", list(&statuses));
    let _ = writeln!(out, "  clients  {}", list(&s.clients.top(top.min(5))));
    let hosts = s.hosts.top(top.min(5));
    if hosts.iter().any(|(h, _)| h != "-") {
        let _ = writeln!(out, "  hosts    {}", list(&hosts));
    }
}

/// A report as a block of text for plain mode.
pub fn render_plain(r: &Report, top: usize) -> String {
    let mut out = String::new();
    let seconds = r.to.since(r.from).get();
    let _ = writeln!(
        out,
        "== {} → {} ({seconds} s){}",
        time(r.from),
        time(r.to),
        if r.alerting {
            "  [HIGH TRAFFIC ALERT]"
        } else {
            ""
        }
    );
    let sections = r.interval.sections.top(top);
    if sections.is_empty() {
        let _ = writeln!(out, "no requests");
    } else {
        let width = sections
            .iter()
            .map(|(s, _)| s.len())
            .max()
            .unwrap_or(0)
            .max(7);
        let _ = writeln!(out, "{:<width$}  {:>7}", "section", "hits");
        for (s, n) in &sections {
            let _ = writeln!(out, "{s:<width$}  {n:>7}");
        }
    }
    summary(&mut out, "interval", &r.interval, seconds, top);
    summary(&mut out, "total", &r.total, r.elapsed, top);
    if r.packets > 0 || r.drops > 0 {
        let _ = writeln!(
            out,
            "capture  {} packets, {} dropped by the kernel",
            r.packets, r.drops
        );
    }
    out
}

fn stats_json(s: &Stats, seconds: u64, top: usize) -> serde_json::Value {
    json!({
        "requests": s.requests,
        "requests_per_second": s.rate(seconds),
        "responses": s.responses,
        "bytes": s.bytes,
        "error_rate": s.error_rate(),
        "unique_clients": s.clients.distinct(),
        "methods": s.methods.top(top),
        "status_classes": {"1xx": s.statuses[0], "2xx": s.statuses[1], "3xx": s.statuses[2],
                           "4xx": s.statuses[3], "5xx": s.statuses[4], "other": s.statuses[5]},
        "top_clients": s.clients.top(top),
        "top_hosts": s.hosts.top(top),
        "top_sections": s.sections.top(top),
    })
}

/// An output as one JSON line.
pub fn to_json(o: &Output, top: usize) -> String {
    let v = match o {
        Output::Alert(a) => json!({
            "type": match a.kind { AlertKind::Triggered => "alert", AlertKind::Recovered => "recovered" },
            "hits": a.hits,
            "at": a.at.as_unix(),
            "message": alert_line(a),
        }),
        Output::NoTraffic(q) => json!({
            "type": "no_traffic",
            "from": q.from.as_unix(),
            "to": q.to.as_unix(),
            "message": no_traffic_line(q),
        }),
        Output::Report(r) => json!({
            "type": "report",
            "from": r.from.as_unix(),
            "to": r.to.as_unix(),
            "alerting": r.alerting,
            "interval": stats_json(&r.interval, r.to.since(r.from).get(), top),
            "total": stats_json(&r.total, r.elapsed, top),
            "packets": r.packets,
            "drops": r.drops,
        }),
    };
    v.to_string()
}

/// The web console's state of `app` (`monitor --web`), one JSON document: the clock, the
/// alert (on or off, with its line), requests per second over the last two minutes, the
/// interval in progress and the last one reported, totals, and the alert history (latest
/// 100).
pub fn to_web_json(app: &App) -> String {
    let config = app.config();
    let now = app.now();
    let (from, current) = app.current();
    let alert = app
        .alerts()
        .last()
        .filter(|a| app.alerting() && a.kind == AlertKind::Triggered);
    let alerts = app.alerts();
    let history: Vec<serde_json::Value> = alerts[alerts.len().saturating_sub(100)..]
        .iter()
        .map(|a| {
            json!({
                "type": match a.kind { AlertKind::Triggered => "alert", AlertKind::Recovered => "recovered" },
                "hits": a.hits,
                "at": a.at.as_unix(),
                "message": alert_line(a),
            })
        })
        .collect();
    json!({
        "now": now.as_unix(),
        "start": app.start().as_unix(),
        "interval": config.interval,
        "threshold": config.threshold.to_string(),
        "window": config.window,
        "alerting": app.alerting(),
        "alert": alert.map(|a| json!({"hits": a.hits, "at": a.at.as_unix(), "message": alert_line(a)})),
        "per_second": app.per_second(120),
        "current_from": from.as_unix(),
        "current": stats_json(current, now.since(from).get().max(1), config.top),
        "last_report": app.last_report().map(|r| json!({
            "from": r.from.as_unix(),
            "to": r.to.as_unix(),
            "interval": stats_json(&r.interval, r.to.since(r.from).get(), config.top),
        })),
        "total": stats_json(app.total(), now.since(app.start()).get().max(1), config.top),
        "alerts": history,
    })
    .to_string()
}
