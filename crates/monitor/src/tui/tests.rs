//! Frames of every panel at several sizes, drawn on ratatui's `TestBackend` and compared with
//! insta snapshots; keys go through the pure [`ViewState`].

use std::net::IpAddr;

use banhammer_core::Timestamp;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::*;
use crate::app::MonitorConfig;
use crate::view::Key;
use crate::{Hit, Observation, PerSecond, Reply};

const T0: i64 = 1_549_573_860;

/// Traffic over 23 s: an alert and its recovery, six sections, a 404 section.
fn app() -> App {
    app_until(22)
}

fn app_until(seconds: i64) -> App {
    let mut app = App::new(
        MonitorConfig {
            interval: 10,
            threshold: PerSecond::whole(1),
            window: 10,
            top: 5,
        },
        Timestamp::from_unix(T0),
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
            let t = Timestamp::from_unix(T0 + s);
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
                bytes: Some(51_200),
            }));
        }
    }
    app.set_capture_counters(1234, 0);
    app.advance(Timestamp::from_unix(T0 + seconds));
    app
}

fn draw(app: &App, view: &mut ViewState, messages: &Messages, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| render(app, view, messages, f)).unwrap();
    format!("{}", terminal.backend())
}

fn row(screen: &str, n: usize) -> &str {
    screen.lines().nth(n).unwrap_or_default()
}

#[test]
fn the_overview_at_several_sizes() {
    let app = app();
    for (w, h) in [(40, 10), (80, 24), (120, 40), (200, 50)] {
        let screen = draw(&app, &mut ViewState::default(), &Messages::new(10), w, h);
        insta::assert_snapshot!(format!("overview_{w}x{h}"), screen);
    }
}

#[test]
fn the_alert_is_in_the_title_bar_at_any_size() {
    // At 10 s the alert fired (at 21:11:01) and has not recovered.
    let app = app_until(10);
    assert!(app.alerting());
    for (w, h) in [(20, 3), (40, 10), (80, 24), (200, 50)] {
        for panel in Panel::ALL {
            let mut view = ViewState {
                panel,
                ..ViewState::default()
            };
            let screen = draw(&app, &mut view, &Messages::new(10), w, h);
            assert!(
                row(&screen, 0).contains("HIGH TRAFFIC"),
                "{w}x{h} {panel:?}:\n{screen}"
            );
        }
    }
    let screen = draw(&app, &mut ViewState::default(), &Messages::new(10), 40, 10);
    insta::assert_snapshot!("alerting_40x10", screen);
}

#[test]
fn each_panel_at_80x24() {
    let app = app();
    let mut messages = Messages::new(10);
    messages.push("access.log:3: malformed line: no request");
    let mut view = ViewState::default();
    for panel in Panel::ALL.into_iter().skip(1) {
        assert_eq!(view.handle(Key::Tab), crate::Outcome::Redraw);
        assert_eq!(view.panel, panel);
        let screen = draw(&app, &mut view, &messages, 80, 24);
        insta::assert_snapshot!(format!("panel_{}_80x24", panel.name()), screen);
    }
}

#[test]
fn the_sections_panel_sorts_and_scrolls() {
    let app = app();
    let messages = Messages::new(10);
    let mut view = ViewState {
        panel: Panel::Sections,
        ..ViewState::default()
    };
    view.handle(Key::Char('s'));
    let by_name = draw(&app, &mut view, &messages, 80, 8);
    insta::assert_snapshot!("sections_by_name_80x8", by_name);
    // Four sections in a run, three rows: one line to scroll, and no further.
    view.handle(Key::End);
    let scrolled = draw(&app, &mut view, &messages, 80, 8);
    assert_eq!(view.scroll, 1);
    insta::assert_snapshot!("sections_by_name_scrolled_80x8", scrolled);
}

#[test]
fn statistics_wrap_instead_of_being_cut() {
    let app = app();
    let mut view = ViewState {
        panel: Panel::Statistics,
        ..ViewState::default()
    };
    let narrow = draw(&app, &mut view, &Messages::new(10), 40, 40);
    // The top clients of the run are on screen, whole, however narrow the panel: a name is
    // never parted from its count (a no-break space between them).
    for client in ["10.0.0.1\u{a0}23", "10.0.0.4\u{a0}12", "10.0.0.5\u{a0}12"] {
        assert!(narrow.contains(client), "{client} missing:\n{narrow}");
    }
    insta::assert_snapshot!("statistics_40x40", narrow);
    // Shorter, the panel scrolls to its last line.
    view.handle(Key::End);
    let bottom = draw(&app, &mut view, &Messages::new(10), 40, 12);
    assert!(view.scroll > 0, "nothing to scroll at 40x12");
    insta::assert_snapshot!("statistics_bottom_40x12", bottom);
}

#[test]
fn the_help_is_drawn_over_the_panel() {
    let app = app();
    let mut view = ViewState::default();
    view.handle(Key::Char('?'));
    let screen = draw(&app, &mut view, &Messages::new(10), 80, 24);
    insta::assert_snapshot!("help_80x24", screen);
}

#[test]
fn the_latest_message_is_in_the_status_line() {
    let app = app();
    let mut messages = Messages::new(10);
    messages.push("access.log:3: malformed line: no request");
    messages.push("access.log:7: malformed line: bad status");
    for (w, h) in [(40, 10), (120, 40)] {
        let screen = draw(&app, &mut ViewState::default(), &messages, w, h);
        let last = row(&screen, usize::from(h) - 1);
        assert!(last.contains("[2] access.log:7"), "{w}x{h}: {last}");
    }
}

#[test]
fn a_gap_without_traffic_is_shown_in_the_title_line() {
    let mut app = App::new(MonitorConfig::default(), Timestamp::from_unix(T0));
    app.advance(Timestamp::from_unix(T0 + 3600));
    let screen = draw(&app, &mut ViewState::default(), &Messages::new(1), 160, 20);
    assert!(
        row(&screen, 0).contains("no traffic from 2019-02-07T21:11:00Z to 2019-02-07T22:11:00Z"),
        "{screen}"
    );
}
