//! The TUI's view state (panel shown, scroll offset, sort order, help) and what each key does
//! to it: pure, so keys are tested without a terminal.

/// The panels, in the order Tab goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Panel {
    /// Sections, statistics, the sparkline and the alerts on one screen.
    #[default]
    Overview,
    /// Every section, of the last interval and of the whole run.
    Sections,
    /// The statistics of the last interval and of the whole run, in full.
    Statistics,
    /// The whole alert history.
    Alerts,
    /// What the monitor said while the TUI held the terminal (malformed lines, notices, logs).
    Messages,
}

impl Panel {
    /// Every panel, in Tab order.
    pub const ALL: [Panel; 5] = [
        Panel::Overview,
        Panel::Sections,
        Panel::Statistics,
        Panel::Alerts,
        Panel::Messages,
    ];

    /// Its name in the title bar.
    pub fn name(self) -> &'static str {
        match self {
            Panel::Overview => "overview",
            Panel::Sections => "sections",
            Panel::Statistics => "statistics",
            Panel::Alerts => "alerts",
            Panel::Messages => "messages",
        }
    }

    fn index(self) -> usize {
        Panel::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    fn step(self, forward: bool) -> Panel {
        let n = Panel::ALL.len();
        let i = if forward {
            self.index() + 1
        } else {
            self.index() + n - 1
        };
        Panel::ALL[i % n]
    }
}

/// How the sections tables are ordered; `s` goes to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Most hits first (ties by name).
    #[default]
    MostHits,
    /// By name, A to Z.
    Name,
    /// Fewest hits first (ties by name): the rarely visited sections.
    FewestHits,
}

impl Sort {
    /// Its name in the tables' titles.
    pub fn name(self) -> &'static str {
        match self {
            Sort::MostHits => "most hits",
            Sort::Name => "name",
            Sort::FewestHits => "fewest hits",
        }
    }

    fn next(self) -> Sort {
        match self {
            Sort::MostHits => Sort::Name,
            Sort::Name => Sort::FewestHits,
            Sort::FewestHits => Sort::MostHits,
        }
    }
}

/// A key, as the view knows it (the binary translates its terminal's key events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character (`q`, `j`, `k`, `s`, `?`, `g`, `G`, `1`…`5`).
    Char(char),
    /// Ctrl-C.
    CtrlC,
    /// Escape.
    Esc,
    /// Tab.
    Tab,
    /// Shift-Tab.
    BackTab,
    /// Arrow up.
    Up,
    /// Arrow down.
    Down,
    /// Page up.
    PageUp,
    /// Page down.
    PageDown,
    /// Home.
    Home,
    /// End.
    End,
}

/// What a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The user asked to quit.
    Quit,
    /// The view changed: draw again.
    Redraw,
    /// Nothing to do.
    Ignored,
}

/// What the TUI shows of an [`crate::App`]; the render clamps `scroll` to what there is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewState {
    /// The panel shown.
    pub panel: Panel,
    /// Lines scrolled past in the panel shown (0 at its top).
    pub scroll: usize,
    /// The sections tables' order.
    pub sort: Sort,
    /// Whether the help is shown over the panel.
    pub help: bool,
    /// Rows a page holds, as last drawn (PageUp/PageDown move by that much).
    pub page: usize,
}

impl ViewState {
    /// Applies `key`: Tab/Shift-Tab or 1–5 switch panels (the scroll goes back to the top),
    /// arrows, j/k, PageUp/PageDown, Home/End or g/G scroll, `s` sorts the sections, `?`
    /// shows or hides the help, `q`, Esc and Ctrl-C quit (Esc first closes the help).
    pub fn handle(&mut self, key: Key) -> Outcome {
        let page = self.page.max(1);
        match key {
            Key::Char('q') | Key::CtrlC => return Outcome::Quit,
            Key::Esc if !self.help => return Outcome::Quit,
            Key::Esc => self.help = false,
            Key::Char('?' | 'h') => self.help = !self.help,
            Key::Tab => self.show(self.panel.step(true)),
            Key::BackTab => self.show(self.panel.step(false)),
            Key::Char(c @ '1'..='5') => {
                let i = usize::from(c as u8 - b'1');
                self.show(Panel::ALL[i]);
            }
            Key::Down | Key::Char('j') => self.scroll = self.scroll.saturating_add(1),
            Key::Up | Key::Char('k') => self.scroll = self.scroll.saturating_sub(1),
            Key::PageDown | Key::Char(' ') => self.scroll = self.scroll.saturating_add(page),
            Key::PageUp => self.scroll = self.scroll.saturating_sub(page),
            Key::Home | Key::Char('g') => self.scroll = 0,
            // Clamped to the last page when drawn.
            Key::End | Key::Char('G') => self.scroll = usize::MAX,
            Key::Char('s') => self.sort = self.sort.next(),
            Key::Char(_) => return Outcome::Ignored,
        }
        Outcome::Redraw
    }

    fn show(&mut self, panel: Panel) {
        self.panel = panel;
        self.scroll = 0;
    }

    /// Keeps the scroll within `lines` of content shown `rows` at a time, and remembers the
    /// page size (the render calls it for the panel it draws).
    pub fn clamp(&mut self, lines: usize, rows: usize) {
        self.page = rows;
        self.scroll = self.scroll.min(lines.saturating_sub(rows));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tab_goes_through_every_panel_and_back_and_resets_the_scroll() {
        let mut v = ViewState::default();
        let mut seen = vec![v.panel];
        for _ in 0..Panel::ALL.len() {
            v.scroll = 3;
            assert_eq!(v.handle(Key::Tab), Outcome::Redraw);
            assert_eq!(v.scroll, 0);
            seen.push(v.panel);
        }
        assert_eq!(&seen[..5], &Panel::ALL);
        assert_eq!(seen[5], Panel::Overview);
        v.handle(Key::BackTab);
        assert_eq!(v.panel, Panel::Messages);
        v.handle(Key::Char('2'));
        assert_eq!(v.panel, Panel::Sections);
    }

    #[test]
    fn scrolling_keys_move_by_a_line_or_a_page_and_clamp_to_the_content() {
        let mut v = ViewState::default();
        v.clamp(100, 10);
        v.handle(Key::Down);
        v.handle(Key::Char('j'));
        assert_eq!(v.scroll, 2);
        v.handle(Key::Char('k'));
        assert_eq!(v.scroll, 1);
        v.handle(Key::PageDown);
        assert_eq!(v.scroll, 11);
        v.handle(Key::PageUp);
        v.handle(Key::PageUp);
        assert_eq!(v.scroll, 0);
        v.handle(Key::Up);
        assert_eq!(v.scroll, 0);
        v.handle(Key::End);
        v.clamp(100, 10);
        assert_eq!(v.scroll, 90);
        v.handle(Key::Char('g'));
        assert_eq!(v.scroll, 0);
    }

    #[test]
    fn s_cycles_the_sort_and_question_mark_toggles_the_help() {
        let mut v = ViewState::default();
        let sorts: Vec<Sort> = (0..3)
            .map(|_| {
                v.handle(Key::Char('s'));
                v.sort
            })
            .collect();
        assert_eq!(sorts, [Sort::Name, Sort::FewestHits, Sort::MostHits]);
        v.handle(Key::Char('?'));
        assert!(v.help);
        // Esc closes the help before it quits.
        assert_eq!(v.handle(Key::Esc), Outcome::Redraw);
        assert!(!v.help);
        assert_eq!(v.handle(Key::Esc), Outcome::Quit);
    }

    #[test]
    fn q_and_ctrl_c_quit_and_other_keys_are_ignored() {
        let mut v = ViewState::default();
        assert_eq!(v.handle(Key::Char('q')), Outcome::Quit);
        assert_eq!(v.handle(Key::CtrlC), Outcome::Quit);
        assert_eq!(v.handle(Key::Char('x')), Outcome::Ignored);
        assert_eq!(v, ViewState::default());
    }
}
