//! The terminal view, drawn from an [`App`], a [`ViewState`] and the [`Messages`] said while it
//! runs (pure: whatever they hold, nothing else). A title bar that always shows the alert, the
//! panel chosen with Tab, and a status line with the latest message or the keys.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Clear, List, ListItem, Paragraph, Row, Sparkline, Table, Wrap,
};
use ratatui::Frame;

use crate::app::{AlertKind, App};
use crate::messages::Messages;
use crate::stats::{Counter, Stats};
use crate::text::{alert_line, human_bytes, no_traffic_line, time};
use crate::view::{Panel, ViewState};

/// Draws the panel `view` shows on the whole frame, and clamps its scroll to what there is.
pub fn render(app: &App, view: &mut ViewState, messages: &Messages, frame: &mut Frame<'_>) {
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .split(frame.area());
    title(app, view, frame, rows[0]);
    let body = rows[1];
    match view.panel {
        Panel::Overview => {
            view.clamp(0, usize::from(body.height));
            overview(app, view, frame, body);
        }
        Panel::Sections => sections_panel(app, view, frame, body),
        Panel::Statistics => {
            let lines = statistics(app, app.config().top);
            scrolled(view, frame, body, " Statistics ", lines);
        }
        Panel::Alerts => {
            let lines = app
                .alerts()
                .iter()
                .map(|a| Line::from(Span::styled(alert_line(a), alert_style(a.kind))))
                .collect();
            let title = format!(" Alerts ({} in all) ", app.alerts().len());
            scrolled(view, frame, body, &title, lines);
        }
        Panel::Messages => {
            let mut lines: Vec<Line<'_>> = Vec::new();
            if messages.dropped() > 0 {
                lines.push(Line::from(format!(
                    "({} earlier message(s) not kept)",
                    messages.dropped()
                )));
            }
            lines.extend(messages.lines().map(|m| Line::from(m.to_owned())));
            let title = format!(
                " Messages ({}), printed again on exit ",
                messages.lines().len()
            );
            scrolled(view, frame, body, &title, lines);
        }
    }
    status(messages, frame, rows[2]);
    if view.help {
        help(frame, body);
    }
}

/// The title bar: the alert state first, so that it is seen on the narrowest terminal.
fn title(app: &App, view: &ViewState, frame: &mut Frame<'_>, area: Rect) {
    let state = if app.alerting() {
        let hits = app
            .alerts()
            .iter()
            .rev()
            .find(|a| a.kind == AlertKind::Triggered)
            .map_or(0, |a| a.hits);
        Span::styled(
            format!(" HIGH TRAFFIC hits={hits} "),
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
    let index = Panel::ALL
        .iter()
        .position(|p| *p == view.panel)
        .unwrap_or(0)
        + 1;
    let mut spans = vec![
        state,
        Span::raw(format!(" {} ", time(app.now()))),
        Span::styled(
            format!("{} {index}/{}", view.panel.name(), Panel::ALL.len()),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw("  banhammer monitor"),
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

/// The status line: the latest message said while the TUI runs (with how many there are), or
/// the keys.
fn status(messages: &Messages, frame: &mut Frame<'_>, area: Rect) {
    let line = match messages.latest() {
        Some(latest) => Line::from(vec![
            Span::styled(
                format!("[{}] ", messages.lines().len() as u64 + messages.dropped()),
                Style::default().fg(Color::Black).bg(Color::Yellow),
            ),
            Span::styled(latest.to_owned(), Style::default().fg(Color::Yellow)),
        ]),
        None => Line::from(Span::styled(
            "Tab panels  ↑↓ PgUp PgDn scroll  s sort  ? help  q quit",
            Style::default().add_modifier(Modifier::DIM),
        )),
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn overview(app: &App, view: &ViewState, frame: &mut Frame<'_>, area: Rect) {
    // Below 12 rows only sections and statistics fit; the sparkline needs 20.
    let alerts = if area.height >= 12 {
        alerts_height(app, area)
    } else {
        0
    };
    let spark = if area.height >= 20 { 5 } else { 0 };
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Min(4),
            Constraint::Length(spark),
            Constraint::Length(alerts),
        ])
        .split(area);
    // Wide: sections beside statistics (the sections get more room from 120 columns on);
    // narrow: above them.
    let (direction, split) = match rows[0].width {
        120.. => (Direction::Horizontal, 60),
        80.. => (Direction::Horizontal, 50),
        _ => (Direction::Vertical, 50),
    };
    let middle = Layout::default()
        .direction(direction)
        .constraints([
            Constraint::Percentage(split),
            Constraint::Percentage(100 - split),
        ])
        .split(rows[0]);
    // Two tables one above the other when each keeps a few rows, else side by side.
    let stacked = if middle[0].height >= 12 {
        Direction::Vertical
    } else {
        Direction::Horizontal
    };
    sections(app, view, frame, middle[0], stacked, app.config().top, 0);
    // Three of each top list: the statistics panel has them all.
    let lines = statistics(app, 3);
    let block = Block::default().borders(Borders::ALL).title(" Statistics ");
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        middle[1],
    );
    if spark > 0 {
        sparkline(app, frame, rows[1]);
    }
    if alerts > 0 {
        latest_alerts(app, frame, rows[2]);
    }
}

fn alerts_height(app: &App, area: Rect) -> u16 {
    let wanted = u16::try_from(app.alerts().len())
        .unwrap_or(u16::MAX)
        .saturating_add(2);
    wanted.clamp(3, (area.height / 4).max(3))
}

/// The sections panel: every section of the last interval and of the whole run, scrolled
/// together.
fn sections_panel(app: &App, view: &mut ViewState, frame: &mut Frame<'_>, area: Rect) {
    let sort = view.sort;
    let longest = last_sections(app)
        .sorted(sort)
        .len()
        .max(app.total().sections.sorted(sort).len());
    // Two borders and a header row.
    let rows = usize::from(area.height.saturating_sub(3));
    view.clamp(longest, rows);
    let direction = if area.width >= 60 {
        Direction::Horizontal
    } else {
        Direction::Vertical
    };
    sections(app, view, frame, area, direction, usize::MAX, view.scroll);
}

/// The sections of the last reported interval, or of the one in progress before any report.
fn last_sections(app: &App) -> &Counter {
    app.last_report()
        .map_or(&app.current().1.sections, |r| &r.interval.sections)
}

/// The last interval's sections and the whole run's, side by side or one above the other.
fn sections(
    app: &App,
    view: &ViewState,
    frame: &mut Frame<'_>,
    area: Rect,
    direction: Direction,
    rows: usize,
    skip: usize,
) {
    let halves = Layout::default()
        .direction(direction)
        .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
        .split(area);
    let interval = match app.last_report() {
        Some(r) => format!(" Sections {}→{} ", short(r.from), short(r.to)),
        None => " Sections, interval in progress ".to_owned(),
    };
    let by = view.sort.name();
    table(
        frame,
        halves[0],
        &format!("{interval}by {by} "),
        last_sections(app),
        view,
        rows,
        skip,
    );
    table(
        frame,
        halves[1],
        &format!(" Sections, whole run, by {by} "),
        &app.total().sections,
        view,
        rows,
        skip,
    );
}

fn table(
    frame: &mut Frame<'_>,
    area: Rect,
    title: &str,
    counts: &Counter,
    view: &ViewState,
    rows: usize,
    skip: usize,
) {
    let sum = counts.sum().max(1);
    let rows: Vec<Row<'_>> = counts
        .sorted(view.sort)
        .into_iter()
        .skip(skip)
        .take(rows)
        .map(|(s, n)| {
            let share = format!("{:.0}%", n as f64 * 100.0 / sum as f64);
            Row::new(vec![s, n.to_string(), share])
        })
        .collect();
    // Below 30 columns the share gives its room to the section's name.
    let share = if area.width >= 30 { 4 } else { 0 };
    let table = Table::new(
        rows,
        [
            Constraint::Min(6),
            Constraint::Length(7),
            Constraint::Length(share),
        ],
    )
    .header(
        Row::new(vec!["section", "hits", "%"]).style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(
        Block::default()
            .borders(Borders::ALL)
            .title(title.to_owned()),
    );
    frame.render_widget(table, area);
}

/// `key count` with a no-break space, so that wrapping never parts a name from its count.
fn pairs(items: impl IntoIterator<Item = (String, u64)>) -> String {
    let items: Vec<String> = items
        .into_iter()
        .map(|(k, n)| format!("{k}\u{a0}{n}"))
        .collect();
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join("  ")
    }
}

/// A block of statistics; each line wraps at the panel's width rather than being cut.
fn stat_lines(label: &str, s: &Stats, seconds: u64, top: usize) -> Vec<Line<'static>> {
    let classes = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];
    let statuses = classes
        .iter()
        .zip(s.statuses)
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| ((*c).to_owned(), n));
    let mut lines = vec![
        Line::from(Span::styled(
            label.to_owned(),
            Style::default().add_modifier(Modifier::BOLD),
        )),
        Line::from(format!(
            " {}\u{a0}req ({:.1}/s)  {}  errors\u{a0}{:.1}%  {}\u{a0}clients{}",
            s.requests,
            s.rate(seconds),
            human_bytes(s.bytes).replace(' ', "\u{a0}"),
            s.error_rate() * 100.0,
            s.clients.distinct(),
            if s.clients.saturated() { "+" } else { "" },
        )),
        Line::from(format!(" methods {}", pairs(s.methods.top(top)))),
        Line::from(format!(" status  {}", pairs(statuses))),
        Line::from(format!(" clients {}", pairs(s.clients.top(top)))),
    ];
    let hosts = s.hosts.top(top);
    if hosts.iter().any(|(h, _)| h != "-") {
        lines.push(Line::from(format!(" hosts   {}", pairs(hosts))));
    }
    lines
}

fn statistics(app: &App, top: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some(r) = app.last_report() {
        lines.extend(stat_lines(
            "Last interval",
            &r.interval,
            r.to.since(r.from).get(),
            top,
        ));
    }
    lines.extend(stat_lines(
        "Since start",
        app.total(),
        app.now().since(app.start()).get(),
        top,
    ));
    let (packets, drops) = app.capture_counters();
    if packets > 0 || drops > 0 {
        lines.push(Line::from(format!(
            " capture {packets}\u{a0}packets, {drops}\u{a0}dropped"
        )));
    }
    lines
}

/// A full-size panel of wrapped lines, scrolled as `view` says (clamped to its last page).
fn scrolled(
    view: &mut ViewState,
    frame: &mut Frame<'_>,
    area: Rect,
    title: &str,
    lines: Vec<Line<'_>>,
) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(title.to_owned());
    let paragraph = Paragraph::new(lines).wrap(Wrap { trim: false });
    let inner = block.inner(area);
    view.clamp(paragraph.line_count(inner.width), usize::from(inner.height));
    let offset = u16::try_from(view.scroll).unwrap_or(u16::MAX);
    frame.render_widget(paragraph.scroll((offset, 0)).block(block), area);
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

fn alert_style(kind: AlertKind) -> Style {
    let color = if kind == AlertKind::Triggered {
        Color::Red
    } else {
        Color::Green
    };
    Style::default().fg(color)
}

fn latest_alerts(app: &App, frame: &mut Frame<'_>, area: Rect) {
    let shown = usize::from(area.height.saturating_sub(2));
    let all = app.alerts();
    let items: Vec<ListItem<'_>> = all[all.len().saturating_sub(shown)..]
        .iter()
        .map(|a| ListItem::new(Line::from(Span::styled(alert_line(a), alert_style(a.kind)))))
        .collect();
    let title = format!(" Alerts ({} in all; panel 4 has every one) ", all.len());
    frame.render_widget(
        List::new(items).block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

/// The keys, over the panel.
fn help(frame: &mut Frame<'_>, area: Rect) {
    let keys = [
        ("Tab, Shift-Tab", "next, previous panel"),
        ("1 … 5", "overview, sections, statistics, alerts, messages"),
        ("↑ ↓, j k", "scroll a line"),
        ("PgUp PgDn, space", "scroll a page"),
        ("Home End, g G", "top, bottom"),
        ("s", "sort sections: most hits, name, fewest hits"),
        ("?", "this help (Esc closes it)"),
        ("q, Esc, Ctrl-C", "quit"),
    ];
    let lines: Vec<Line<'_>> = keys
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{k:<17}"),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    let width = area.width.min(72);
    let height = area
        .height
        .min(u16::try_from(lines.len()).unwrap_or(u16::MAX) + 2);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(" Keys ")),
        popup,
    );
}

fn short(t: banhammer_core::Timestamp) -> String {
    let full = time(t);
    full.get(11..19).map_or(full.clone(), str::to_owned)
}

#[cfg(test)]
mod tests;
