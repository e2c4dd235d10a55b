//! The monitor's sources behind one trait: access logs (replayed or followed), and packets
//! (live capture, pcap files) through the capture crate.

use std::path::Path;

use anyhow::{anyhow, Context};
use banhammer_accesslog::{
    input, AccessLogLine, BoundedLines, Follower, LinePipeline, LogFormat, Malformed, ReportPolicy,
    MAX_LINE,
};
use banhammer_monitor::{Hit, Observation, Reply};
use banhammer_sink::{escape, Escaped};

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

pub(super) fn open(opts: &MonitorOptions) -> anyhow::Result<Box<dyn Source>> {
    if let Some(log) = &opts.log {
        let format =
            LogFormat::from_setting(&opts.log_format).map_err(|e| anyhow!("--log-format: {e}"))?;
        return if opts.replay {
            Ok(Box::new(LogReplay::open(log, format)?))
        } else {
            Ok(Box::new(LogFollow {
                follower: Follower::new(log, MAX_LINE).from_end(),
                pipeline: LinePipeline::new(
                    format,
                    log.display().to_string(),
                    ReportPolicy::first(MAX_REPORTED),
                ),
            }))
        };
    }
    super::capture::open(opts)
}

/// Text from a log or a packet as the monitor shows it: control characters escaped, so that
/// no view (TUI, plain, JSON) hands a client's bytes to a terminal.
pub(super) fn shown(text: &str) -> String {
    escape(text).into_owned()
}

/// A parsed line as a request and, when it has a status, a response.
fn line_observations(l: &AccessLogLine<'_>, out: &mut Vec<Observation>) {
    out.push(Observation::Request(Hit {
        time: l.time,
        client: l.client,
        host: l.host.map(shown),
        method: l.method.map(shown),
        path: l.path.map(shown),
    }));
    if let Some(status) = l.status {
        out.push(Observation::Response(Reply {
            time: l.time,
            status,
            bytes: l.bytes,
        }));
    }
}

/// Malformed lines reported in full; after that only counted.
const MAX_REPORTED: u64 = 10;

#[allow(clippy::print_stderr)] // malformed lines are reported on stderr
fn report(m: &Malformed<'_>) {
    eprintln!("{}", Escaped(m));
}

/// A log read from its start, in event time.
struct LogReplay {
    origin: String,
    lines: BoundedLines<Box<dyn std::io::BufRead + Send>>,
    pipeline: LinePipeline,
    number: u64,
}

impl LogReplay {
    fn open(path: &Path, format: LogFormat) -> anyhow::Result<Self> {
        let input = input::open(path).with_context(|| format!("opening {}", path.display()))?;
        let origin = path.display().to_string();
        Ok(LogReplay {
            pipeline: LinePipeline::new(format, origin.as_str(), ReportPolicy::first(MAX_REPORTED)),
            origin,
            lines: BoundedLines::new(input.reader, MAX_LINE),
            number: 0,
        })
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
                return Ok(SourceState::Done);
            };
            self.number += 1;
            if let Some(l) = self.pipeline.parse(self.number, line, report) {
                line_observations(&l, out);
            }
        }
        Ok(SourceState::More)
    }

    fn live(&self) -> bool {
        false
    }
}

/// A log followed like `tail -F`, in wall time. Truncations are said on stderr, as malformed
/// lines are.
struct LogFollow {
    follower: Follower,
    pipeline: LinePipeline,
}

impl Source for LogFollow {
    #[allow(clippy::print_stderr)]
    fn poll(&mut self, out: &mut Vec<Observation>) -> anyhow::Result<SourceState> {
        let mut lines = Vec::new();
        let more = self.follower.poll(&mut lines, 1 << 20)?;
        for notice in self.follower.take_notices() {
            let file = self.follower.path().display();
            eprintln!("{}: {}", Escaped(file), Escaped(&notice));
        }
        for line in &lines {
            let (number, line) = line.numbered();
            if let Some(l) = self.pipeline.parse(number, line, report) {
                line_observations(&l, out);
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
