//! The terminal view: sections, statistics, a requests-per-second sparkline and the alert
//! history, drawn from an [`App`] (pure: whatever the App holds, nothing else).

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;

use crate::app::{AlertKind, App};
use crate::stats::Stats;
use crate::text::{alert_line, no_traffic_line, time};

/// Draws `app` on the whole frame.
pub fn render(app: &App, frame: &mut Frame<'_>) {
    let area = frame.area();
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Min(8),
            Constraint::Length(5),
            Constraint::Length(alerts_height(app, area)),
        ])
        .split(area);
    title(app, frame, rows[0]);
    let middle = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
        .split(rows[1]);
    sections(app, frame, middle[0]);
    statistics(app, frame, middle[1]);
    sparkline(app, frame, rows[2]);
    alerts(app, frame, rows[3]);
}

fn alerts_height(app: &App, area: Rect) -> u16 {
    let wanted = u16::try_from(app.alerts().len())
        .unwrap_or(u16::MAX)
        .saturating_add(2);
    wanted.clamp(3, (area.height / 3).max(3))
}

fn title(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let state = if app.alerting() {
        Span::styled(
            " HIGH TRAFFIC ",
            Style::default()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
        )
    } else {
        Span::styled(
            " traffic normal ",
            Style::default().fg(Color::Black).bg(Color::Green),
        )
    };
    let mut spans = vec![
        Span::styled(
            "banhammer monitor",
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("  {}  ", time(app.now()))),
        state,
        Span::raw("  q quits"),
    ];
    // A gap is shown until an interval after it is reported (the panels show the one before).
    let gap = app
        .no_traffic()
        .filter(|q| app.last_report().is_none_or(|r| r.to <= q.from));
    if let Some(q) = gap {
        spans.push(Span::raw(format!("  {}", no_traffic_line(&q))));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn sections(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let top = app.config().top;
    let (title, list) = match app.last_report() {
        Some(r) => (
            format!(" Top sections, {} → {} ", short(r.from), short(r.to)),
            r.interval.sections.top(top),
        ),
        None => (
            " Top sections (first interval in progress) ".to_owned(),
            app.current().1.sections.top(top),
        ),
    };
    let rows: Vec<Row<'_>> = list
        .into_iter()
        .map(|(s, n)| Row::new(vec![s, n.to_string()]))
        .collect();
    let table = Table::new(rows, [Constraint::Min(10), Constraint::Length(8)])
        .header(
            Row::new(vec!["section", "hits"]).style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(Block::default().borders(Borders::ALL).title(title));
    frame.render_widget(table, area);
}

fn stat_lines(label: &str, s: &Stats, seconds: u64) -> Vec<Line<'static>> {
    let classes = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];
    let statuses: Vec<String> = classes
        .iter()
        .zip(s.statuses)
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    let methods: Vec<String> = s
        .methods
        .top(4)
        .into_iter()
        .map(|(m, n)| format!("{m} {n}"))
        .collect();
    let clients: Vec<String> = s
        .clients
        .top(3)
        .into_iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    vec![
        Line::from(Span::styled(
            label.to_owned(),
            Style::default().add_modifier(Modifier::BOLD),
        )),
        Line::from(format!(
            " {} req ({:.1}/s)  {} B  errors {:.1}%  {} clients",
            s.requests,
            s.rate(seconds),
            s.bytes,
            s.error_rate() * 100.0,
            s.clients.distinct()
        )),
        Line::from(format!(" methods {}", methods.join("  "))),
        Line::from(format!(" status  {}", statuses.join("  "))),
        Line::from(format!(" clients {}", clients.join("  "))),
    ]
}

fn statistics(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let mut lines = Vec::new();
    if let Some(r) = app.last_report() {
        lines.extend(stat_lines(
            "Last interval",
            &r.interval,
            r.to.since(r.from).get(),
        ));
    }
    lines.extend(stat_lines(
        "Since start",
        app.total(),
        app.now().since(app.start()).get(),
    ));
    let (packets, drops) = app.capture_counters();
    if packets > 0 || drops > 0 {
        lines.push(Line::from(format!(
            " capture {packets} packets, {drops} dropped"
        )));
    }
    let block = Block::default().borders(Borders::ALL).title(" Statistics ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn sparkline(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let width = usize::from(area.width.saturating_sub(2)).max(1);
    let data = app.per_second(width);
    let peak = data.iter().copied().max().unwrap_or(0);
    let block = Block::default().borders(Borders::ALL).title(format!(
        " Requests per second, last {width} s (peak {peak}) "
    ));
    frame.render_widget(Sparkline::default().block(block).data(&data), area);
}

fn alerts(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let shown = usize::from(area.height.saturating_sub(2));
    let all = app.alerts();
    let items: Vec<ListItem<'_>> = all[all.len().saturating_sub(shown)..]
        .iter()
        .map(|a| {
            let color = if a.kind == AlertKind::Triggered {
                Color::Red
            } else {
                Color::Green
            };
            ListItem::new(Line::from(Span::styled(
                alert_line(a),
                Style::default().fg(color),
            )))
        })
        .collect();
    let title = format!(" Alerts ({} in all) ", all.len());
    frame.render_widget(
        List::new(items).block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

fn short(t: banhammer_core::Timestamp) -> String {
    let full = time(t);
    full.get(11..19).map_or(full.clone(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use banhammer_core::Timestamp;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::*;
    use crate::app::MonitorConfig;
    use crate::{Hit, Observation, PerSecond, Reply};

    fn app() -> App {
        let t0 = 1_549_573_860;
        let mut app = App::new(
            MonitorConfig {
                interval: 10,
                threshold: PerSecond::whole(1),
                window: 10,
                top: 5,
            },
            Timestamp::from_unix(t0),
        );
        let paths = [
            "/pages/create",
            "/pages/edit",
            "/api/user",
            "/",
            "/api/user",
            "/report",
        ];
        for s in 0..25 {
            for (i, p) in paths.iter().enumerate().take(if s < 12 { 6 } else { 1 }) {
                let t = Timestamp::from_unix(t0 + s);
                app.observe(Observation::Request(Hit {
                    time: t,
                    client: IpAddr::from([10, 0, 0, i as u8 + 1]),
                    host: Some("my.site.com".to_owned()),
                    method: Some(if i == 3 { "POST" } else { "GET" }.to_owned()),
                    path: Some((*p).to_owned()),
                }));
                app.observe(Observation::Response(Reply {
                    time: t,
                    status: if i == 5 { 404 } else { 200 },
                    bytes: Some(512),
                }));
            }
        }
        app.set_capture_counters(1234, 0);
        app.advance(Timestamp::from_unix(t0 + 22));
        app
    }

    #[test]
    fn the_whole_screen() {
        let app = app();
        let mut terminal = Terminal::new(TestBackend::new(110, 32)).unwrap();
        terminal.draw(|f| render(&app, f)).unwrap();
        insta::assert_snapshot!(terminal.backend());
    }

    #[test]
    fn a_gap_without_traffic_is_shown_in_the_title_line() {
        let t0 = 1_549_573_860;
        let mut app = App::new(MonitorConfig::default(), Timestamp::from_unix(t0));
        app.advance(Timestamp::from_unix(t0 + 3600));
        let mut terminal = Terminal::new(TestBackend::new(140, 20)).unwrap();
        terminal.draw(|f| render(&app, f)).unwrap();
        let title: String = (0..140)
            .map(|x| terminal.backend().buffer()[(x, 0)].symbol().to_owned())
            .collect();
        assert!(
            title.contains("no traffic from 2019-02-07T21:11:00Z to 2019-02-07T22:11:00Z"),
            "{title}"
        );
    }

    #[test]
    fn a_narrow_screen_still_draws() {
        let app = app();
        let mut terminal = Terminal::new(TestBackend::new(40, 12)).unwrap();
        terminal.draw(|f| render(&app, f)).unwrap();
        insta::assert_snapshot!(terminal.backend());
    }
}
