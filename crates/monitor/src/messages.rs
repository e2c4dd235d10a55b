//! The messages the monitor would have written to stderr while the TUI held the terminal
//! (malformed lines, notices, log records): kept here, bounded, shown in the status line and
//! the messages panel, and printed once the terminal is given back.

use std::collections::VecDeque;

/// A bounded log of messages: past its capacity the oldest are dropped (and counted).
#[derive(Debug, Clone)]
pub struct Messages {
    lines: VecDeque<String>,
    cap: usize,
    dropped: u64,
}

impl Messages {
    /// A log keeping the latest `cap` messages (at least one).
    pub fn new(cap: usize) -> Self {
        Messages {
            lines: VecDeque::new(),
            cap: cap.max(1),
            dropped: 0,
        }
    }

    /// Adds a message; a multi-line one is kept as one message per line, without the line
    /// breaks (a line break drawn raw would move the cursor).
    pub fn push(&mut self, text: &str) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if self.lines.len() == self.cap {
                self.lines.pop_front();
                self.dropped += 1;
            }
            self.lines.push_back(line.trim_end().to_owned());
        }
    }

    /// The messages kept, oldest first.
    pub fn lines(&self) -> impl ExactSizeIterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }

    /// The newest message.
    pub fn latest(&self) -> Option<&str> {
        self.lines.back().map(String::as_str)
    }

    /// Messages dropped to stay within the capacity.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether nothing was said.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.dropped == 0
    }

    /// What to print once the terminal is back: a line for the dropped ones, if any, then the
    /// messages kept, oldest first.
    pub fn to_print(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.lines.len() + 1);
        if self.dropped > 0 {
            out.push(format!(
                "({} earlier message(s) not kept while the TUI ran)",
                self.dropped
            ));
        }
        out.extend(self.lines.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Messages;

    #[test]
    fn the_latest_messages_are_kept_and_the_dropped_ones_counted() {
        let mut m = Messages::new(2);
        assert!(m.is_empty());
        m.push("a.log:1: bad line\n");
        m.push("two\nthree\n\n");
        assert_eq!(m.lines().collect::<Vec<_>>(), ["two", "three"]);
        assert_eq!(m.latest(), Some("three"));
        assert_eq!(m.dropped(), 1);
        assert_eq!(m.to_print().len(), 3);
        assert!(m.to_print()[0].contains("1 earlier"), "{:?}", m.to_print());
    }
}
