//! The ratatui loop: draws the monitor, hands keys to its view state, and keeps what would be
//! said on stderr while it holds the terminal, to print once the terminal is given back.

use std::io;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use banhammer_monitor::{App, Key, Outcome, ViewState};
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::backend::Backend;
use ratatui::Terminal;

use super::say::Say;
use super::{drive, Ended, MonitorConfig, MonitorOptions, Source};

/// Messages kept while the TUI runs (the latest; the rest are counted).
const KEPT_MESSAGES: usize = 1000;

/// Where keys come from: the terminal, or a test's script.
pub(super) trait Keys {
    /// The next key within `wait` (zero: only one already pressed), if any.
    fn next(&mut self, wait: Duration) -> io::Result<Option<Key>>;
}

/// The terminal's keys, through crossterm.
struct TerminalKeys;

impl Keys for TerminalKeys {
    fn next(&mut self, wait: Duration) -> io::Result<Option<Key>> {
        if !event::poll(wait)? {
            return Ok(None);
        }
        // A resize is none: the next draw fits the new size.
        Ok(match event::read()? {
            Event::Key(k) => key_of(k),
            _ => None,
        })
    }
}

/// A key press as the view knows it (releases and unknown keys are none).
fn key_of(k: KeyEvent) -> Option<Key> {
    if k.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    Some(match k.code {
        KeyCode::Char('c') if ctrl => Key::CtrlC,
        KeyCode::Char(_) if ctrl => return None,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Esc => Key::Esc,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        _ => return None,
    })
}

pub(super) fn run(
    source: &mut dyn Source,
    config: MonitorConfig,
    opts: &MonitorOptions,
    stop: &AtomicBool,
    say: &Say,
    web: Option<&mut super::Web>,
) -> anyhow::Result<ExitCode> {
    say.hold(KEPT_MESSAGES);
    let mut terminal = ratatui::init();
    let result = show(
        &mut terminal,
        &mut TerminalKeys,
        source,
        config,
        opts,
        stop,
        say,
        web,
    );
    ratatui::restore();
    // What was said while the TUI ran, now on the restored terminal.
    say.release(&mut io::stderr().lock())?;
    result.and_then(Ended::result)
}

/// Runs the monitor on `terminal` until the user quits (a replay that has ended stays on
/// screen until then) or a signal comes.
#[expect(
    clippy::too_many_arguments,
    reason = "the loop's inputs, each used once; a struct would only rename them"
)]
fn show<B: Backend>(
    terminal: &mut Terminal<B>,
    keys: &mut impl Keys,
    source: &mut dyn Source,
    config: MonitorConfig,
    opts: &MonitorOptions,
    stop: &AtomicBool,
    say: &Say,
    web: Option<&mut super::Web>,
) -> anyhow::Result<Ended>
where
    B::Error: Send + Sync + 'static,
{
    let mut view = ViewState::default();
    let mut quit = false;
    let result = drive(
        source,
        config,
        opts,
        stop,
        web,
        |app| {
            draw(terminal, app, &mut view, say)?;
            while let Some(key) = keys.next(Duration::ZERO)? {
                match view.handle(key) {
                    Outcome::Quit => {
                        quit = true;
                        return Ok(false);
                    }
                    Outcome::Redraw => draw(terminal, app, &mut view, say)?,
                    Outcome::Ignored => {}
                }
            }
            Ok(true)
        },
        |_| Ok(()),
    );
    if let (Ok(Ended { app: Some(app), .. }), false) = (&result, quit) {
        while !stop.load(Ordering::Relaxed) {
            draw(terminal, app, &mut view, say)?;
            if let Some(key) = keys.next(Duration::from_millis(250))? {
                if view.handle(key) == Outcome::Quit {
                    break;
                }
            }
        }
    }
    result
}

fn draw<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &App,
    view: &mut ViewState,
    say: &Say,
) -> anyhow::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    // Nothing in the draw says anything (the lock is not taken twice).
    say.with(|messages| terminal.draw(|f| banhammer_monitor::tui::render(app, view, messages, f)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use banhammer_monitor::{Key, MonitorConfig, PerSecond};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::{show, Keys};
    use crate::monitor::say::Say;
    use crate::monitor::{sources, MonitorOptions};

    /// The user presses `q` once the screen waits for keys, that is once the replay is over.
    struct QuitWhenWaiting;

    impl Keys for QuitWhenWaiting {
        fn next(&mut self, wait: Duration) -> std::io::Result<Option<Key>> {
            Ok((!wait.is_zero()).then_some(Key::Char('q')))
        }
    }

    fn options(log: &std::path::Path) -> MonitorOptions {
        MonitorOptions {
            interface: "any".to_owned(),
            filter: None,
            pcap: None,
            log: Some(log.to_owned()),
            log_format: "combined".to_owned(),
            replay: true,
            max_delay: None,
            interval: 10,
            threshold: PerSecond::whole(10),
            top: 10,
            plain: false,
            json: false,
            duration: None,
            web: None,
        }
    }

    // Issue 16: a replayed log with one malformed line drew the line's report over the TUI.
    #[test]
    fn a_malformed_line_in_a_replay_is_shown_in_the_status_line_then_printed_on_exit() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let mut text = String::new();
        for s in 0..30 {
            writeln!(
                text,
                "10.0.0.{} - - [07/Feb/2019:21:11:{s:02} +0000] \"GET /api/user HTTP/1.1\" 200 2048 \"-\" \"curl\"",
                s % 3 + 1
            )
            .unwrap();
            if s == 12 {
                text.push_str("this is not a log line\n");
            }
        }
        std::fs::write(&log, text).unwrap();
        let opts = options(&log);
        let config = MonitorConfig {
            interval: 10,
            threshold: opts.threshold,
            window: 120,
            top: 10,
        };
        let say = Say::default();
        say.hold(100);
        let mut source = sources::open(&opts, &say).unwrap();
        let mut terminal = Terminal::new(TestBackend::new(100, 24)).unwrap();
        let stop = AtomicBool::new(false);
        let ended = show(
            &mut terminal,
            &mut QuitWhenWaiting,
            &mut *source,
            config,
            &opts,
            &stop,
            &say,
            None,
        )
        .unwrap();
        assert_eq!(ended.app.map(|a| a.total().requests), Some(30));
        // The screen as the user left it: the report in the status line, no stray text. The
        // temporary folder's name is put aside, and the rows' padding with it.
        let folder = dir.path().display().to_string();
        let screen: String = format!("{}", terminal.backend())
            .lines()
            .map(|l| {
                l.replace(&folder, "DIR")
                    .trim_end_matches([' ', '"'])
                    .to_owned()
                    + "\n"
            })
            .collect();
        insta::assert_snapshot!(screen);
        let last = screen.lines().last().unwrap_or_default();
        assert!(last.contains("DIR/access.log:14: "), "{last}");
        // Printed once the terminal is given back.
        let mut printed = Vec::new();
        say.release(&mut printed).unwrap();
        let printed = String::from_utf8(printed).unwrap();
        assert!(
            printed.starts_with(&format!("{folder}/access.log:14: ")),
            "{printed}"
        );
    }
}
