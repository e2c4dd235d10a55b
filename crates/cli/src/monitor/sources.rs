//! The monitor's sources behind one trait: access logs (replayed or followed), and packets
//! (live capture, pcap files) through the capture crate.

use std::path::Path;

use anyhow::{anyhow, Context};
use banhammer_accesslog::{
    input, AccessLogLine, BoundedLines, Follower, LinePipeline, LogFormat, Note, Reorder,
    ReportPolicy, DEFAULT_MAX_BUFFERED, DEFAULT_MAX_DELAY, MAX_LINE,
};
use banhammer_core::Seconds;
use banhammer_monitor::{Hit, Observation, Reply};
use banhammer_sink::{escape, Escaped};

use super::say::Say;
use super::MonitorOptions;

/// What a poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SourceState {
    /// Observations came and more may be waiting.
    More,
    /// Nothing for now.
    Idle,
    /// The input is over (replays).
    Done,
}

/// Something that yields HTTP observations.
pub(super) trait Source {
    /// Appends what is available now.
    fn poll(&mut self, out: &mut Vec<Observation>) -> anyhow::Result<SourceState>;
    /// Whether time is wall time (live) rather than the observations' own.
    fn live(&self) -> bool;
    /// Packets seen and dropped by the kernel (0 for logs).
    fn counters(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// Opens the source `opts` name; what it has to say (malformed lines, notices) goes to `say`.
pub(super) fn open(opts: &MonitorOptions, say: &Say) -> anyhow::Result<Box<dyn Source>> {
    if let Some(log) = &opts.log {
        let pipeline = log_pipeline(log, &opts.log_format)?;
        return if opts.replay {
            let max_delay = opts.max_delay.unwrap_or(DEFAULT_MAX_DELAY);
            Ok(Box::new(LogReplay::open(log, pipeline, max_delay, say)?))
        } else {
            Ok(Box::new(LogFollow::open(log, pipeline, say)))
        };
    }
    super::capture::open(opts)
}

/// The line pipeline for `--log`: `--log-format auto` (the default) reads a log whose first
/// line is the CSV export's header as csv, any other as combined, and says which on stderr.
fn log_pipeline(log: &Path, setting: &str) -> anyhow::Result<LinePipeline> {
    let origin = log.display().to_string();
    let policy = ReportPolicy::first(MAX_REPORTED);
    if setting.trim().eq_ignore_ascii_case("auto") {
        return Ok(LinePipeline::new(LogFormat::Combined, origin, policy).detecting_format());
    }
    let format = LogFormat::from_setting(setting).map_err(|e| anyhow!("--log-format: {e}"))?;
    Ok(LinePipeline::new(format, origin, policy))
}

/// Text from a log or a packet as the monitor shows it: control characters escaped, so that
/// no view (TUI, plain, JSON) hands a client's bytes to a terminal.
pub(super) fn shown(text: &str) -> String {
    escape(text).into_owned()
}

/// A parsed line as the monitor sees it: a request and, when it has a status, a response.
struct Seen {
    request: Hit,
    response: Option<Reply>,
}

impl Seen {
    fn push_to(self, out: &mut Vec<Observation>) {
        out.push(Observation::Request(self.request));
        out.extend(self.response.map(Observation::Response));
    }
}

/// Lines whose client is a host name: the monitor counts clients by address, so it skips
/// them, and says so for the first one.
#[derive(Default)]
struct HostNames {
    skipped: u64,
}

impl HostNames {
    /// What the monitor sees of line `number`, or `None` (counted) if its client is a name
    /// (said, for the first, as malformed lines are).
    fn seen(
        &mut self,
        origin: &str,
        number: u64,
        l: &AccessLogLine<'_>,
        say: &Say,
    ) -> Option<Seen> {
        let Some(client) = l.client.ip() else {
            self.skipped += 1;
            if self.skipped == 1 {
                say.line(format_args!(
                    "{}:{number}: `{}` is a host name: the monitor counts clients by address, \
                     so lines that name their client are skipped",
                    Escaped(origin),
                    Escaped(&l.client)
                ));
            }
            return None;
        };
        Some(Seen {
            request: Hit {
                time: l.time,
                client,
                host: l.host.map(shown),
                method: l.method.map(shown),
                path: l.path.map(shown),
            },
            response: l.status.map(|status| Reply {
                time: l.time,
                status,
                bytes: l.bytes,
            }),
        })
    }
}

/// Malformed and late lines reported in full; after that only counted.
const MAX_REPORTED: u64 = 10;

/// Malformed and late lines, and the format chosen, said escaped.
fn report(say: &Say) -> impl FnMut(&Note<'_>) + '_ {
    move |note| say.line(Escaped(note))
}

/// A log read from its start, in event time, its lines put in time order within
/// `--max-delay` as `replay` puts them.
struct LogReplay {
    origin: String,
    lines: BoundedLines<Box<dyn std::io::BufRead + Send>>,
    pipeline: LinePipeline,
    number: u64,
    reorder: Reorder<Seen>,
    names: HostNames,
    say: Say,
}

impl LogReplay {
    fn open(
        path: &Path,
        pipeline: LinePipeline,
        max_delay: Seconds,
        say: &Say,
    ) -> anyhow::Result<Self> {
        let input = input::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(LogReplay {
            origin: path.display().to_string(),
            lines: BoundedLines::new(input.reader, MAX_LINE),
            pipeline,
            number: 0,
            reorder: Reorder::new(max_delay, DEFAULT_MAX_BUFFERED),
            names: HostNames::default(),
            say: say.clone(),
        })
    }

    /// The end of input: every line still waiting, in order, and what was only counted.
    fn finish(&mut self, out: &mut Vec<Observation>) {
        self.reorder.flush();
        while let Some((_, seen)) = self.reorder.pop() {
            seen.push_to(out);
        }
        let late = self.pipeline.unreported_late();
        if late > 0 {
            self.say
                .line(format_args!("… and {late} more late line(s)"));
        }
        if self.reorder.early() > 0 {
            self.say.line(format_args!(
                "{} line(s) counted before {} had passed: more than {DEFAULT_MAX_BUFFERED} \
                 lines waited to be put in order",
                self.reorder.early(),
                self.reorder.max_delay(),
            ));
        }
        if self.names.skipped > 1 {
            self.say.line(format_args!(
                "… and {} more line(s) with a host name for client",
                self.names.skipped - 1
            ));
        }
    }
}

impl Source for LogReplay {
    fn poll(&mut self, out: &mut Vec<Observation>) -> anyhow::Result<SourceState> {
        for _ in 0..4096 {
            let Some(line) = self
                .lines
                .next_line()
                .with_context(|| format!("reading {}", self.origin))?
            else {
                self.finish(out);
                return Ok(SourceState::Done);
            };
            self.number += 1;
            let number = self.number;
            let Some(l) = self.pipeline.parse(number, line, report(&self.say)) else {
                continue;
            };
            let Some(seen) = self.names.seen(&self.origin, number, &l, &self.say) else {
                continue;
            };
            let reorder = &mut self.reorder;
            let said = report(&self.say);
            if let Some(late) = self.pipeline.order(reorder, number, l.time, seen, said) {
                late.push_to(out);
            }
            while let Some((_, seen)) = self.reorder.pop() {
                seen.push_to(out);
            }
        }
        Ok(SourceState::More)
    }

    fn live(&self) -> bool {
        false
    }
}

/// A log followed like `tail -F`, in wall time (lines are counted as they come).
/// Truncations are said on stderr, as malformed lines are.
struct LogFollow {
    follower: Follower,
    pipeline: LinePipeline,
    names: HostNames,
    say: Say,
}

impl LogFollow {
    fn open(path: &Path, mut pipeline: LinePipeline, say: &Say) -> Self {
        if !path.exists() {
            // Else an empty dashboard is all a mistyped name would show.
            say.line(format_args!(
                "{}: no such file yet: waiting for it to appear.",
                Escaped(path.display())
            ));
        }
        // Following starts at the end: the format is chosen from the file's first lines. A
        // file that cannot be read now is the follower's to report.
        let _ = input::head_lines(path, |number, line| {
            pipeline.detect_format(number, line, &mut report(say))
        });
        LogFollow {
            follower: Follower::new(path, MAX_LINE).from_end(),
            pipeline,
            names: HostNames::default(),
            say: say.clone(),
        }
    }
}

impl Source for LogFollow {
    fn poll(&mut self, out: &mut Vec<Observation>) -> anyhow::Result<SourceState> {
        let mut lines = Vec::new();
        let more = self.follower.poll(&mut lines, 1 << 20)?;
        for notice in self.follower.take_notices() {
            let file = self.follower.path().display();
            self.say
                .line(format_args!("{}: {}", Escaped(file), Escaped(&notice)));
        }
        let origin = self.follower.path().display().to_string();
        for line in &lines {
            let (number, line) = line.numbered();
            if let Some(l) = self.pipeline.parse(number, line, report(&self.say)) {
                if let Some(seen) = self.names.seen(&origin, number, &l, &self.say) {
                    seen.push_to(out);
                }
            }
        }
        Ok(if more || !lines.is_empty() {
            SourceState::More
        } else {
            SourceState::Idle
        })
    }

    fn live(&self) -> bool {
        true
    }
}
