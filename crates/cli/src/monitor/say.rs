//! Where the monitor's messages go (malformed and late lines, notices, log records): stderr,
//! or, while the TUI holds the terminal, a bounded log that the TUI shows and that is printed
//! once the terminal is given back (written to the terminal under the TUI, they would be
//! drawn over its panels and stay there as garbage).

use std::fmt::Display;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use banhammer_monitor::Messages;

/// A cheap handle on the monitor's message sink; clones share it.
#[derive(Clone, Default)]
pub(super) struct Say(Arc<Mutex<Option<Messages>>>);

impl Say {
    fn held(&self) -> MutexGuard<'_, Option<Messages>> {
        // A panic while a message was added leaves a usable log.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Says `text`: kept while the TUI holds the terminal, else on stderr at once.
    #[allow(clippy::print_stderr)] // the monitor's notices are said on stderr
    pub(super) fn line(&self, text: impl Display) {
        let mut held = self.held();
        match held.as_mut() {
            Some(messages) => messages.push(&text.to_string()),
            None => {
                drop(held);
                eprintln!("{text}");
            }
        }
    }

    /// From now on, keeps messages (the latest `cap`) instead of printing them.
    pub(super) fn hold(&self, cap: usize) {
        let mut held = self.held();
        if held.is_none() {
            *held = Some(Messages::new(cap));
        }
    }

    /// Calls `f` with the messages kept (none if they are not being kept).
    pub(super) fn with<R>(&self, f: impl FnOnce(&Messages) -> R) -> R {
        match self.held().as_ref() {
            Some(messages) => f(messages),
            None => f(&Messages::new(1)),
        }
    }

    /// Stops keeping messages and writes those kept to `out`, oldest first.
    pub(super) fn release(&self, out: &mut impl io::Write) -> io::Result<()> {
        let kept = self.held().take();
        for line in kept.iter().flat_map(Messages::to_print) {
            writeln!(out, "{line}")?;
        }
        out.flush()
    }
}

/// Log records (`RUST_LOG`, warnings by default) go where the monitor's messages go, without
/// colour codes (they would be drawn raw in the TUI's panel).
pub(super) fn init_logging(say: &Say) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Already set (a test that runs the monitor twice): the first one stays.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(say.clone())
        .try_init();
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Say {
    type Writer = Record;

    fn make_writer(&'a self) -> Record {
        Record {
            say: self.clone(),
            text: Vec::new(),
        }
    }
}

/// One log record, said whole when the formatter is done with it.
pub(super) struct Record {
    say: Say,
    text: Vec<u8>,
}

impl io::Write for Record {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.text);
        let text = text.trim_end();
        if !text.is_empty() {
            self.say.line(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Say;

    #[test]
    fn held_messages_are_written_once_released_and_then_said_at_once_again() {
        let say = Say::default();
        say.hold(10);
        say.line("access.log:2: malformed");
        assert_eq!(
            say.with(|m| m.latest().map(str::to_owned)),
            Some("access.log:2: malformed".to_owned())
        );
        let mut out = Vec::new();
        say.release(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "access.log:2: malformed\n");
        assert!(say.with(banhammer_monitor::Messages::is_empty));
    }
}
