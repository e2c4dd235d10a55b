//! `LinePipeline`: the per-line work every access-log front end shares. A raw line and its
//! number go in; a parsed line, or the engine's events for it, come out. Headers, empty lines
//! and comments are skipped, malformed and late lines counted and reported by one policy,
//! ignored clients counted, and an unconfigured format chosen from the first line.

use std::fmt;
use std::sync::Arc;

use banhammer_core::{Event, Seconds, Timestamp};

use crate::parse::is_csv_header;
use crate::{parse, AccessLogLine, BoundedLine, LineError, LineEvents, LogFormat, Reorder};

/// Which malformed and late lines are reported in full; the others are only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportPolicy {
    first: u64,
    every: Option<u64>,
}

impl ReportPolicy {
    /// The first `n` lines of each kind in full, then only counted: a file of junk must not
    /// bury the output in messages.
    pub const fn first(n: u64) -> Self {
        ReportPolicy {
            first: n,
            every: None,
        }
    }

    /// Also every `n`-th line of each kind after the first ones, so that a process that runs
    /// for weeks still says now and then that its input is bad.
    #[must_use]
    pub const fn then_every(self, n: u64) -> Self {
        ReportPolicy {
            every: Some(n),
            ..self
        }
    }

    /// Whether the `count`-th line of a kind is reported in full.
    fn shows(self, count: u64) -> bool {
        count <= self.first || self.every.is_some_and(|n| n > 0 && count.is_multiple_of(n))
    }
}

/// Lines of one kind (malformed, late): how many, and how many were reported in full.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    seen: u64,
    reported: u64,
}

impl Tally {
    /// Counts one more; returns its count if `policy` reports it in full.
    fn add(&mut self, policy: ReportPolicy) -> Option<u64> {
        self.seen += 1;
        policy.shows(self.seen).then(|| {
            self.reported += 1;
            self.seen
        })
    }
}

/// A malformed line to report. Displays as `origin:number: why`.
#[derive(Debug, Clone, Copy)]
pub struct Malformed<'p> {
    /// The input it came from (a file name, `-`).
    pub origin: &'p str,
    /// Its 1-based number in that input.
    pub number: u64,
    /// Why it was not read.
    pub why: LineError,
    /// How many malformed lines so far, this one included.
    pub count: u64,
}

impl fmt::Display for Malformed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.origin, self.number, self.why)
    }
}

/// A line too late to be counted in order (see [`Reorder`]): it is counted at once, out of
/// order. Displays as `origin:number: late line: …`.
#[derive(Debug, Clone, Copy)]
pub struct LateLine<'p> {
    /// The input it came from.
    pub origin: &'p str,
    /// Its 1-based number in that input.
    pub number: u64,
    /// When it was logged.
    pub time: Timestamp,
    /// The newest time seen before it.
    pub newest: Timestamp,
    /// How far behind the newest a line may be and still be put in order.
    pub max_delay: Seconds,
    /// How many late lines so far, this one included.
    pub count: u64,
}

impl fmt::Display for LateLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let behind = self.newest.since(self.time);
        write!(
            f,
            "{}:{}: late line: logged at {}, ",
            self.origin, self.number, self.time
        )?;
        if behind > self.max_delay {
            write!(
                f,
                "{behind} before the newest line (max_delay is {})",
                self.max_delay
            )?;
        } else {
            // Only after a full buffer released lines before their delay.
            f.write_str("before lines already counted (the reorder buffer was full)")?;
        }
        f.write_str("; counted out of order")
    }
}

/// The format chosen from the first line, when none was configured. Displays as
/// `origin:number: … reading the log as csv`.
#[derive(Debug, Clone, Copy)]
pub struct FormatChosen<'p> {
    /// The input whose first line chose.
    pub origin: &'p str,
    /// That line's number.
    pub number: u64,
    /// The format's name.
    pub format: &'static str,
    /// Whether the line was the CSV export's header.
    pub header: bool,
}

impl fmt::Display for FormatChosen<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = if self.header {
            "a CSV header"
        } else {
            "no CSV header"
        };
        write!(
            f,
            "{}:{}: {why}: reading the log as {}",
            self.origin, self.number, self.format
        )
    }
}

/// What the pipeline reports about a line.
#[derive(Debug, Clone, Copy)]
pub enum Note<'p> {
    /// It does not follow the format.
    Malformed(Malformed<'p>),
    /// It came too late to be counted in order.
    Late(LateLine<'p>),
    /// It chose the format.
    Format(FormatChosen<'p>),
}

impl fmt::Display for Note<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Malformed(m) => m.fmt(f),
            Note::Late(l) => l.fmt(f),
            Note::Format(c) => c.fmt(f),
        }
    }
}

/// A line that counts for a token: the token, the time and the metrics the line counts as,
/// owned, so that it can wait in a [`Reorder`] buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLine {
    token: String,
    time: Timestamp,
    metrics: Vec<Arc<str>>,
}

impl TokenLine {
    /// Who the line counts for.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// When the line was logged.
    pub fn time(&self) -> Timestamp {
        self.time
    }

    /// The engine's events for the line, in order: the request metric, then matchers'.
    pub fn events(&self) -> impl Iterator<Item = Event<'_>> + '_ {
        self.metrics
            .iter()
            .map(|metric| Event::new(&self.token, metric, self.time))
    }
}

/// Parses the lines of one input after another (files of a replay, or a followed file),
/// keeping the counts and the report policy across them.
#[derive(Debug)]
pub struct LinePipeline {
    format: LogFormat,
    origin: String,
    policy: ReportPolicy,
    /// The format is still to be chosen from the first line.
    detect: bool,
    lines: u64,
    malformed: Tally,
    skipped: u64,
    ignored: u64,
    late: Tally,
}

impl LinePipeline {
    /// Lines in `format` from the input named `origin`, malformed ones reported per `policy`.
    pub fn new(format: LogFormat, origin: impl Into<String>, policy: ReportPolicy) -> Self {
        LinePipeline {
            format,
            origin: origin.into(),
            policy,
            detect: false,
            lines: 0,
            malformed: Tally::default(),
            skipped: 0,
            ignored: 0,
            late: Tally::default(),
        }
    }

    /// The format was not configured: the first line that is not empty or a comment chooses
    /// it, csv if it is the CSV export's header, the format given otherwise, and the choice
    /// is reported ([`Note::Format`]).
    #[must_use]
    pub fn detecting_format(mut self) -> Self {
        self.detect = true;
        self
    }

    /// The next lines come from the input named `origin` (the next file of a replay); the
    /// counts go on.
    pub fn set_origin(&mut self, origin: impl Into<String>) {
        self.origin = origin.into();
    }

    /// The format lines are read in (the chosen one once chosen).
    pub fn format(&self) -> &LogFormat {
        &self.format
    }

    /// Chooses the format from `line`, line `number` of the current input, if it is still to
    /// be chosen and the line is not empty or a comment. [`LinePipeline::parse`] calls it on
    /// each line until then; a caller that starts reading mid-file hands it the file's first
    /// lines first. Returns whether the format is still to be chosen.
    pub fn detect_format(
        &mut self,
        number: u64,
        line: BoundedLine<'_>,
        report: &mut impl FnMut(&Note<'_>),
    ) -> bool {
        if !self.detect {
            return false;
        }
        let bytes = match line {
            BoundedLine::Line(bytes) => bytes.trim_ascii(),
            BoundedLine::TooLong => b"?",
        };
        if bytes.is_empty() || bytes.starts_with(b"#") {
            return true;
        }
        self.detect = false;
        let header = is_csv_header(bytes);
        if header {
            self.format = LogFormat::Csv;
        }
        report(&Note::Format(FormatChosen {
            origin: &self.origin,
            number,
            format: self.format.name(),
            header,
        }));
        false
    }

    /// Parses line `number` of the current input. A header, an empty line or a comment gives
    /// `None` (counted as skipped); so does a malformed line, after it is counted and, if the
    /// policy says so, reported.
    pub fn parse<'l>(
        &mut self,
        number: u64,
        line: BoundedLine<'l>,
        mut report: impl FnMut(&Note<'_>),
    ) -> Option<AccessLogLine<'l>> {
        self.lines += 1;
        self.detect_format(number, line, &mut report);
        let parsed = match line {
            BoundedLine::Line(bytes) => parse(bytes, &self.format),
            BoundedLine::TooLong => Err(LineError::TooLong),
        };
        match parsed {
            Ok(l) => Some(l),
            Err(LineError::Header | LineError::Empty | LineError::Comment) => {
                self.skipped += 1;
                None
            }
            Err(why) => {
                if let Some(count) = self.malformed.add(self.policy) {
                    report(&Note::Malformed(Malformed {
                        origin: &self.origin,
                        number,
                        why,
                        count,
                    }));
                }
                None
            }
        }
    }

    /// [`LinePipeline::parse`], then the token and metrics per `map`; `None` also for a line
    /// whose client is ignored (counted in [`LinePipeline::ignored`]).
    pub fn events(
        &mut self,
        number: u64,
        line: BoundedLine<'_>,
        map: &LineEvents<'_>,
        report: impl FnMut(&Note<'_>),
    ) -> Option<TokenLine> {
        let line = self.parse(number, line, report)?;
        let Some(token) = map.token(&line) else {
            self.ignored += 1;
            return None;
        };
        Some(TokenLine {
            token,
            time: line.time,
            metrics: map.metrics(&line).cloned().collect(),
        })
    }

    /// Hands `item`, from line `number` logged at `time`, to `reorder`. An item too late to be
    /// put in order is counted, reported per the policy, and given back to be counted at once
    /// (the engine counts it as a late event). Then take what is due with [`Reorder::pop`].
    pub fn order<T>(
        &mut self,
        reorder: &mut Reorder<T>,
        number: u64,
        time: Timestamp,
        item: T,
        mut report: impl FnMut(&Note<'_>),
    ) -> Option<T> {
        let late = reorder.push(time, item).err()?;
        if let Some(count) = self.late.add(self.policy) {
            report(&Note::Late(LateLine {
                origin: &self.origin,
                number,
                time,
                newest: late.newest,
                max_delay: reorder.max_delay(),
                count,
            }));
        }
        Some(late.item)
    }

    /// Lines seen, whatever became of them.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Malformed lines seen (headers, empty lines and comments are not malformed).
    pub fn malformed(&self) -> u64 {
        self.malformed.seen
    }

    /// Malformed lines only counted, not reported in full.
    pub fn unreported(&self) -> u64 {
        self.malformed.seen - self.malformed.reported
    }

    /// Headers, empty lines and comments.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Well-formed lines of ignored clients.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Lines too late to be counted in order ([`LinePipeline::order`]).
    pub fn late(&self) -> u64 {
        self.late.seen
    }

    /// Late lines only counted, not reported in full.
    pub fn unreported_late(&self) -> u64 {
        self.late.seen - self.late.reported
    }
}

#[cfg(test)]
mod tests;
