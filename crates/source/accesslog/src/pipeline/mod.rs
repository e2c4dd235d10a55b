//! `LinePipeline`: the per-line work every access-log front end shares. A raw line and its
//! number go in; a parsed line, or the engine's events for it, come out. Headers are skipped,
//! malformed lines counted and reported by one policy, ignored clients counted.

use std::fmt;

use banhammer_core::{Event, Timestamp};

use crate::{parse, AccessLogLine, BoundedLine, LineError, LineEvents, LogFormat};

/// Which malformed lines are reported in full; the others are only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportPolicy {
    first: u64,
    every: Option<u64>,
}

impl ReportPolicy {
    /// The first `n` malformed lines in full, then only counted: a file of junk must not
    /// bury the output in messages.
    pub const fn first(n: u64) -> Self {
        ReportPolicy {
            first: n,
            every: None,
        }
    }

    /// Also every `n`-th malformed line after the first ones, so that a process that runs
    /// for weeks still says now and then that its input is bad.
    #[must_use]
    pub const fn then_every(self, n: u64) -> Self {
        ReportPolicy {
            every: Some(n),
            ..self
        }
    }

    /// Whether the `count`-th malformed line is reported in full.
    fn shows(self, count: u64) -> bool {
        count <= self.first || self.every.is_some_and(|n| n > 0 && count.is_multiple_of(n))
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

/// A line that counts for a token: the token and one event per metric the line counts as.
#[derive(Debug)]
pub struct TokenLine<'e, 'l> {
    token: String,
    line: AccessLogLine<'l>,
    map: &'e LineEvents<'e>,
}

impl TokenLine<'_, '_> {
    /// Who the line counts for.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// When the line was logged.
    pub fn time(&self) -> Timestamp {
        self.line.time
    }

    /// The engine's events for the line, in order: the request metric, then matchers'.
    pub fn events(&self) -> impl Iterator<Item = Event<'_>> + '_ {
        self.map
            .metrics(&self.line)
            .map(|metric| Event::new(&self.token, metric, self.line.time))
    }
}

/// Parses the lines of one input after another (files of a replay, or a followed file),
/// keeping the counts and the report policy across them.
#[derive(Debug)]
pub struct LinePipeline {
    format: LogFormat,
    origin: String,
    policy: ReportPolicy,
    lines: u64,
    malformed: u64,
    reported: u64,
    ignored: u64,
}

impl LinePipeline {
    /// Lines in `format` from the input named `origin`, malformed ones reported per `policy`.
    pub fn new(format: LogFormat, origin: impl Into<String>, policy: ReportPolicy) -> Self {
        LinePipeline {
            format,
            origin: origin.into(),
            policy,
            lines: 0,
            malformed: 0,
            reported: 0,
            ignored: 0,
        }
    }

    /// The next lines come from the input named `origin` (the next file of a replay); the
    /// counts go on.
    pub fn set_origin(&mut self, origin: impl Into<String>) {
        self.origin = origin.into();
    }

    /// Parses line `number` of the current input. A header gives `None`; so does a malformed
    /// line, after it is counted and, if the policy says so, handed to `report`.
    pub fn parse<'l>(
        &mut self,
        number: u64,
        line: BoundedLine<'l>,
        report: impl FnOnce(&Malformed<'_>),
    ) -> Option<AccessLogLine<'l>> {
        self.lines += 1;
        let parsed = match line {
            BoundedLine::Line(bytes) => parse(bytes, &self.format),
            BoundedLine::TooLong => Err(LineError::TooLong),
        };
        match parsed {
            Ok(l) => Some(l),
            Err(LineError::Header) => None,
            Err(why) => {
                self.malformed += 1;
                if self.policy.shows(self.malformed) {
                    self.reported += 1;
                    report(&Malformed {
                        origin: &self.origin,
                        number,
                        why,
                        count: self.malformed,
                    });
                }
                None
            }
        }
    }

    /// [`LinePipeline::parse`], then the token and events per `map`; `None` also for a line
    /// whose client is ignored (counted in [`LinePipeline::ignored`]).
    pub fn events<'e, 'l>(
        &mut self,
        number: u64,
        line: BoundedLine<'l>,
        map: &'e LineEvents<'e>,
        report: impl FnOnce(&Malformed<'_>),
    ) -> Option<TokenLine<'e, 'l>> {
        let line = self.parse(number, line, report)?;
        let Some(token) = map.token(&line) else {
            self.ignored += 1;
            return None;
        };
        Some(TokenLine { token, line, map })
    }

    /// Lines seen, whatever became of them.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Malformed lines seen (headers are not malformed).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Malformed lines only counted, not reported in full.
    pub fn unreported(&self) -> u64 {
        self.malformed - self.reported
    }

    /// Well-formed lines of ignored clients.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }
}

#[cfg(test)]
mod tests;
